"""EMA with decay warm-up and copied BatchNorm buffers; averaging the best epochs; BatchNorm recomputed."""

import torch
from torch import nn

from pneumoscope.stage1.averaging import EMA, BestK, recompute_batchnorm


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))


def test_ema_decay_warms_up_and_copies_batchnorm_buffers():
    net = _net()
    ema = EMA(net, decay=0.9)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(3.0)
    ema.update(net)  # first update: decay min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.model[0].weight, d * w0 + (1 - d) * (w0 + 1.0))
    assert torch.equal(ema.model[1].running_mean, torch.full((2,), 3.0))
    for _ in range(200):
        ema.update(net)
    assert torch.allclose(ema.model[0].weight, w0 + 1.0, atol=1e-5)  # converges to a still model
    again = EMA(_net(), 0.9)
    again.load_state_dict(ema.state_dict())
    assert again.updates == 201 and torch.equal(again.model[0].weight, ema.model[0].weight)


def test_best_k_keeps_the_lowest_losses_and_averages_them():
    net, best = _net(), BestK(2)
    for epoch, (loss, value) in enumerate([(0.9, 1.0), (0.5, 2.0), (0.7, 4.0), (0.8, 8.0)], start=1):
        with torch.no_grad():
            net[0].weight.fill_(value)
        best.offer(loss, epoch, net)
    assert [e for _, e, _ in best.items] == [2, 3]
    assert sorted(best.average_into(net)) == [2, 3] and torch.allclose(net[0].weight, torch.full_like(net[0].weight, 3.0))


def test_recompute_batchnorm_is_the_plain_mean():
    net = _net().eval()
    images = [torch.full((1, 1, 5, 5), float(v)) for v in (1.0, 3.0)]
    recompute_batchnorm(net, images, torch.device("cpu"))
    with torch.no_grad():
        conv = torch.cat([net[0](x) for x in images])
    assert torch.allclose(net[1].running_mean, conv.mean((0, 2, 3)), atol=1e-5)
    assert net[1].momentum == 0.1 and not net.training
