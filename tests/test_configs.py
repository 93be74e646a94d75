"""Every config in configs/ parses with the anomalib CLI; the unified ones build their datamodule."""

import warnings
from pathlib import Path

import pytest
import yaml
from anomalib.cli import AnomalibCLI

from anomalib_grad.data import MultiCategory
from tests.conftest import REAL_DATA
from tests.test_cli import ANOMALIB, SMALL_ARGS, run

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_all_configs_are_listed():
    assert {path.name for path in CONFIGS} >= {
        "grad.yaml",
        "grad_cpu.yaml",
        "grad_cpu_fast.yaml",
        "grad_unified_mvtec.yaml",
        "grad_unified_visa.yaml",
        "grad_unified_goodsad.yaml",
        "grad_unified_cpu_real.yaml",
    }


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_parses_with_the_anomalib_cli(config, capsys):
    warnings.filterwarnings("ignore")
    with pytest.raises(SystemExit) as exit_info:
        AnomalibCLI(args=["train", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "anomalib_grad.Grad"
    if config.stem.startswith("grad_unified"):
        assert printed["data"]["class_path"] == "anomalib_grad.data.MultiCategory"
        callbacks = printed["trainer"]["callbacks"]
        assert [callback["class_path"] for callback in callbacks] == ["anomalib_grad.callbacks.PerCategoryMetrics"]


@pytest.mark.parametrize(
    ("config", "categories"),
    [("grad_unified_mvtec", 15), ("grad_unified_visa", 12), ("grad_unified_goodsad", 6), ("grad_unified_cpu_real", 2)],
)
def test_unified_config_builds_its_datamodule(config, categories, monkeypatch):
    if config.endswith("cpu_real") and not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    monkeypatch.chdir(REPO)
    data = yaml.safe_load((REPO / "configs" / f"{config}.yaml").read_text())["data"]["init_args"]
    assert len(MultiCategory(**data).categories) == categories


@pytest.mark.slow
def test_unified_cpu_config_trains_from_the_cli_and_writes_per_category_metrics(tmp_path, mixed_root):
    command = [
        str(ANOMALIB),
        "train",
        "--config",
        str(REPO / "configs" / "grad_unified_cpu_real.yaml"),
        "--data.datamodule_args",
        f'{{"root": "{mixed_root}"}}',
        "--data.categories=[gray, rgb]",
        "--data.holdout_anomalies_per_type=1",
        f"--default_root_dir={tmp_path / 'results'}",
        "--model.visualizer=false",
        *SMALL_ARGS,
    ]
    result = run(command, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| gray |" in result.stdout and "| rgb |" in result.stdout and "| mean |" in result.stdout
    (csv_path,) = (tmp_path / "results").rglob("per_category_metrics.csv")
    assert "MultiCategory_MVTecLayout/gray+rgb" in str(csv_path)
    assert len(csv_path.read_text().splitlines()) == 4  # header, gray, rgb, mean


def test_fast_cpu_preset_differs_from_the_cpu_preset_only_in_its_schedule():
    preset, fast = (
        yaml.safe_load((REPO / "configs" / name).read_text()) for name in ("grad_cpu.yaml", "grad_cpu_fast.yaml")
    )
    preset_args, fast_args = preset["model"].pop("init_args"), fast["model"].pop("init_args")
    assert preset == fast
    assert preset_args.pop("abnormal_epochs") + preset_args.pop("normal_epochs") == 50  # the paper's schedule
    assert (fast_args.pop("abnormal_epochs"), fast_args.pop("normal_epochs")) == (4, 16)
    assert preset_args == fast_args
