"""GradModel: shapes, eval output, export-ability and input checks."""

import pytest
import torch
from anomalib.data import InferenceBatch

from anomalib_grad import FeatureBlockPaste, GradModel
from anomalib_grad.models.grad.components.fusion import GridFusion
from anomalib_grad.models.grad.components.refinement import SimilarityRefinement
from anomalib_grad.models.grad.stages import AbnormalStageOutput, NormalStageOutput

SMALL = {
    "input_size": (64, 64),
    "pre_trained": False,
    "branch_depth": 1,
    "branch_width": 16,
    "feature_block_paste": FeatureBlockPaste(block_size=(0, 2)),
}


@pytest.fixture(scope="module")
def model() -> GradModel:
    torch.manual_seed(0)
    return GradModel(**SMALL).eval()


def test_eval_forward_returns_inference_batch():
    torch.manual_seed(0)
    paper = GradModel(**SMALL, positional_rank=0).eval()
    output = paper(torch.rand(2, 3, 64, 64))
    assert isinstance(output, InferenceBatch)
    assert output.anomaly_map.shape == (2, 1, 64, 64)
    assert output.pred_score.shape == (2,)
    assert bool((output.anomaly_map >= 0).all())
    # the paper's image score is a pooled maximum of the map, so it cannot exceed the map's maximum
    assert bool((output.pred_score <= output.anomaly_map.flatten(1).amax(1) + 1e-6).all())


def test_training_forward_of_each_stage():
    model = GradModel(**SMALL).train()
    model.set_stage("normal")
    output = model(torch.rand(2, 3, 64, 64))
    assert isinstance(output, NormalStageOutput)
    assert output.reconstruction.shape == output.features.shape
    assert output.features.shape[-2:] == (8, 8)
    assert output.reconstruction.requires_grad
    model.set_stage("abnormal")
    output = model(torch.rand(2, 3, 64, 64))
    assert isinstance(output, AbnormalStageOutput)
    assert output.scores.shape == output.mask.shape == (2, 1, 8, 8)
    assert bool(output.mask.any())  # FBP pasted a block


def test_feature_channels_follow_the_backbone():
    lite = GradModel(backbone="tf_efficientnet_lite0", **SMALL)
    resnet = GradModel(backbone="resnet18", **SMALL)
    assert lite.extract_features(torch.rand(1, 3, 64, 64)).shape == (1, 40 + 112, 8, 8)
    assert resnet.extract_features(torch.rand(1, 3, 64, 64)).shape == (1, 128 + 256, 8, 8)
    assert lite.normal_grid.global_grid.shape == (1, 152 * 8 * 8, 4, 4)


def test_eval_forward_is_exportable_with_dynamic_batch(model):
    batch = torch.export.Dim("batch", min=1, max=16)
    images = torch.rand(2, 3, 64, 64)
    exported = torch.export.export(model, (images,), dynamic_shapes=({0: batch},))
    other_batch = torch.rand(3, 3, 64, 64)
    expected = model(other_batch)
    actual = exported.module()(other_batch)
    assert torch.allclose(actual[0], expected.pred_score, atol=1e-5)
    assert torch.allclose(actual[2], expected.anomaly_map, atol=1e-5)


def test_refinement_against_hand_computed_values():
    """Three positions (C = 2): similar but orthogonal, far and orthogonal, parallel; s = 0.3·[mse < 10] + 0.7·cos."""
    features = torch.tensor([[1.0, 10.0, 1.0], [0.0, 0.0, 1.0]]).view(1, 2, 1, 3)
    reconstruction = torch.tensor([[0.0, 0.0, 2.0], [1.0, -10.0, 2.0]]).view(1, 2, 1, 3)
    # position 0: mse 1 -> s = 0.3, x = 0.3·(1, 0) + 0.7·(0, 1); position 1: mse 100, cos 0 -> s = 0;
    # position 2: mse 1, cos 1 -> s = 1, the features themselves
    expected = torch.tensor([[0.3, 0.0, 1.0], [0.7, -10.0, 1.0]]).view(1, 2, 1, 3)
    assert torch.allclose(SimilarityRefinement()(reconstruction, features), expected, atol=1e-6)
    # other constants: threshold 0.5 turns the indicator off: s = 0.5·cos, 0 at position 0 and 0.5 at position 2
    refined = SimilarityRefinement(threshold=0.5, indicator_weight=0.2, cosine_weight=0.5)(reconstruction, features)
    assert torch.allclose(refined[0, :, 0, 0], torch.tensor([0.0, 1.0]), atol=1e-6)
    assert torch.allclose(refined[0, :, 0, 2], 0.5 * features[0, :, 0, 2] + 0.5 * reconstruction[0, :, 0, 2])


def test_convex_fusion_has_no_learned_weight():
    fusion = GridFusion("convex", blend=0.25)
    assert list(fusion.parameters()) == []
    assert torch.equal(fusion(torch.ones(1), torch.zeros(1)), torch.tensor([0.25]))


@pytest.mark.parametrize("size", [(250, 256), (16, 16), (64,)])
def test_unusable_input_size_is_rejected(size):
    with pytest.raises(ValueError, match="multiple of 16"):
        GradModel(input_size=size, pre_trained=False)


def test_wrong_image_size_at_runtime_is_a_clear_error(model):
    with pytest.raises(ValueError, match="built for 64×64 images"):
        model(torch.rand(1, 3, 96, 96))


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="Unknown or unsupported backbone 'no_such_net'"):
        GradModel(backbone="no_such_net", **{k: v for k, v in SMALL.items() if k != "backbone"})


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (["layer2", "nope"], "Layer 'nope' not found"),
        (["layer1", "layer2"], "strides \\[4, 8\\]"),
        (["layer2"], "two layers"),
        (["layer1", "layer2", "layer4"], "strides \\[4, 8, 32\\]"),
        ([2, 9], "out of range"),
    ],
)
def test_unusable_layers_are_rejected(layers, message):
    with pytest.raises(ValueError, match=message):
        GradModel(backbone="resnet18", layers=layers, **SMALL)


def test_named_layers_at_strides_8_and_16_work():
    model = GradModel(backbone="resnet18", layers=["layer2", "layer3"], **SMALL)
    assert model.extract_features(torch.rand(1, 3, 64, 64)).shape == (1, 384, 8, 8)


def test_a_stride_4_layer_is_averaged_onto_the_stride_8_grid():
    model = GradModel(backbone="resnet18", layers=["layer1", "layer2", "layer3"], **SMALL)
    images = torch.rand(1, 3, 64, 64)
    features = model.extract_features(images)
    assert features.shape == (1, 64 + 128 + 256, 8, 8)
    network = model.feature_extractor.extractor.feature_extractor
    with torch.no_grad():
        stride_4 = network(images)[0]  # timm's own layer1 output, 16×16
    expected = stride_4.reshape(1, 64, 8, 2, 8, 2).mean(dim=(3, 5))
    assert torch.allclose(features[:, :64], expected, atol=1e-6)
    assert model.normal_grid.global_grid.shape[1] == (64 + 128 + 256) * 8 * 8
