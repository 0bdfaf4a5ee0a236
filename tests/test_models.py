"""Models: registry, forward/backward on padded batches, outputs independent of padding."""

from __future__ import annotations

import re

import pytest
import torch

from sertk import models
from sertk.errors import SertkError
from sertk.models.info import info
from sertk.models.layers import MaskedBatchNorm, lengths_to_mask
from tests.conftest import REPO, run_sertk
from tests.model_checks import check_forward_backward, check_padding_invariance

SHIPPED_CONFIGS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))
CASES = [("light_sernet", 40), ("cnn_attn_baseline", 400), ("cnn_asp", 64)]


@pytest.mark.parametrize("name, dim", CASES)
def test_forward_backward_and_padding_invariance(name, dim):
    torch.manual_seed(0)
    net = models.build(name, input_dim=dim, num_classes=5)
    lengths = torch.tensor([83, 50, 17])
    x = torch.randn(3, 83, dim)
    check_forward_backward(net, x, lengths, num_classes=5)
    check_padding_invariance(net, x, lengths, extra_frames=57)  # padded to 140 frames


def test_masked_batchnorm_ignores_padding():
    torch.manual_seed(0)
    bn = MaskedBatchNorm(3)
    x = torch.randn(2, 3, 10, 4)
    lengths = torch.tensor([10, 4])
    mask = lengths_to_mask(lengths)
    x[1, :, 4:] = 1e4  # padding must not move the statistics
    y = bn(x, mask)
    valid = x.permute(0, 2, 3, 1)[mask].reshape(-1, 3)
    ref = (valid - valid.mean(0)) / torch.sqrt(valid.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(y.permute(0, 2, 3, 1)[mask].reshape(-1, 3), ref,
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bn.bn.running_mean, 0.1 * valid.mean(0))


def test_registry_errors_are_clear():
    with pytest.raises(SertkError, match="unknown model 'nope'; known: .*cnn_attn_baseline"):
        models.build("nope", input_dim=1, num_classes=2)
    with pytest.raises(SertkError, match="bad options for model 'light_sernet'"):
        models.build("light_sernet", input_dim=40, num_classes=2, wrong=1)


def test_models_cli_lists_every_model_with_its_paper():
    out = run_sertk("models", "list").stdout.splitlines()
    for entry in models.MODELS.entries():
        line = next((ln for ln in out if ln.split()[:1] == [entry.name]), None)
        assert line is not None, f"{entry.name} missing from `sertk models list`"
        assert entry.paper and f"[{entry.paper}]" in line, line


@pytest.mark.parametrize("config", SHIPPED_CONFIGS)
def test_every_shipped_config_has_params_and_mflops(config):
    res = info(config)
    print(f"{config}: {res['params']:,} params, {res['mflops']:.1f} MFLOPs / 3 s {res['input']}")
    assert res["params"] > 0 and res["mflops"] > 0
    assert res["model"] in models.MODELS


def test_models_info_cli_prints_params_and_mflops():
    out = run_sertk("models", "info", "compact_gcn").stdout
    assert re.fullmatch(r"compact_gcn: [\d,]+ parameters, [\d.]+ MFLOPs for 3 s of audio "
                        r"\(input \d+ x \d+ from \S+\.yaml, \d+ classes\)\n", out), out
