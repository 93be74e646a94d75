"""Every config in configs/ parses with the anomalib CLI; the unified ones build their datamodule.

configs/model/ and configs/data/ combine with repeated --config into the self-contained presets.
"""

import warnings
from pathlib import Path

import pytest
import yaml
from anomalib.cli import AnomalibCLI

from anomalib_grad.data import MultiCategory
from tests.conftest import REAL_DATA
from tests.integration.test_cli import ANOMALIB, SMALL_ARGS, run

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SPLIT_CONFIGS = sorted((REPO / "configs").glob("model/*.yaml")) + sorted((REPO / "configs").glob("data/*.yaml"))


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


def print_config_in_process(config: Path, capsys) -> dict:
    """``anomalib train --config CONFIG --print_config`` in this process, parsed."""
    warnings.filterwarnings("ignore")
    with pytest.raises(SystemExit) as exit_info:
        AnomalibCLI(args=["train", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_parses_with_the_anomalib_cli(config, capsys):
    printed = print_config_in_process(config, capsys)
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


def test_split_configs_are_listed_and_each_says_how_to_combine_them():
    assert {str(path.relative_to(REPO / "configs")) for path in SPLIT_CONFIGS} == {
        "model/grad_cpu.yaml",
        "model/grad_cpu_fast.yaml",
        "model/grad_paper.yaml",
        "data/synthetic.yaml",
        "data/shared_bottle.yaml",
        "data/shared_magnetic_tile.yaml",
        "data/mvtec.yaml",
    }
    for path in SPLIT_CONFIGS:
        text = path.read_text()
        assert text.startswith("#"), path
        own = str(path.relative_to(REPO))
        assert any(
            own in line and line.count("--config configs/") == 2
            for line in text.splitlines()
            if "anomalib train" in line
        ), f"{own}: no 'anomalib train --config configs/model/... --config configs/data/...' comment"
        sections = set(yaml.safe_load(text))
        if path.parent.name == "data":
            assert sections == {"data"}, path
        else:
            assert "data" not in sections and {"model", "trainer", "seed_everything"} <= sections, path


def print_config(*configs: Path, cwd: Path) -> dict:
    """``anomalib train --config C1 --config C2 ... --print_config`` through the console script, parsed."""
    command = [str(ANOMALIB), "train"]
    for config in configs:
        command += ["--config", str(config)]
    result = run([*command, "--print_config"], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize(
    ("model", "data", "preset"),
    [
        ("grad_cpu", "shared_bottle", "grad_cpu"),
        ("grad_cpu_fast", "shared_magnetic_tile", "grad_cpu_fast"),
        ("grad_paper", "mvtec", "grad"),
    ],
)
def test_model_and_data_files_combine_with_repeated_config(model, data, preset, tmp_path, capsys):
    printed = print_config(
        REPO / "configs" / "model" / f"{model}.yaml", REPO / "configs" / "data" / f"{data}.yaml", cwd=tmp_path
    )
    expected = print_config_in_process(REPO / "configs" / f"{preset}.yaml", capsys)
    assert printed["model"] == expected["model"]
    for section in ("seed_everything", "trainer", "default_root_dir"):  # these live in the model file
        assert printed[section] == expected[section], section
    data_file = yaml.safe_load((REPO / "configs" / "data" / f"{data}.yaml").read_text())["data"]
    assert printed["data"]["class_path"] in {data_file["class_path"], f"anomalib.data.{data_file['class_path']}"}
    for key, value in data_file["init_args"].items():  # a root typed Path prints normalised ("./a" as "a")
        assert printed["data"]["init_args"][key] == (str(Path(value)) if key == "root" else value), key


@pytest.mark.parametrize(
    ("model", "data", "preset"), [("grad_cpu", "synthetic", "grad_cpu"), ("grad_paper", "mvtec", "grad")]
)
def test_model_and_data_files_print_the_same_config_as_the_self_contained_preset(model, data, preset, tmp_path):
    printed = print_config(
        REPO / "configs" / "model" / f"{model}.yaml", REPO / "configs" / "data" / f"{data}.yaml", cwd=tmp_path
    )
    expected = print_config(REPO / "configs" / f"{preset}.yaml", cwd=tmp_path)
    assert printed["model"] == expected["model"]
    assert printed["data"] == expected["data"]
    assert printed == expected  # trainer, seed and run folder too
