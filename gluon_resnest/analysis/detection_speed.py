"""Faster R-CNN FPN inference speed, ours against GluonCV's model with the same weights, timed
in one process with the steps alternating (a slow spell of a shared machine falls on both), and
where the time goes: the trunk, the FPN, the RPN (proposals and their NMS) and the RoI head
(pooling, the box head, decoding and NMS), each stage timed by itself. Optionally torchvision's
``fasterrcnn_resnet50_fpn`` (what a PyTorch user would run; another trunk, a 2fc box head) run
from the peers' environment, its steps alternating with ours, as context. Every record has the
multiply-adds of one image (convolutions and dense layers). And where a training step's time
goes, by MXNet's operators (:func:`training_step_profile`)."""
import os
import tempfile

import mxnet as mx
import numpy as np

from .flops import count_flops
from .peer_benchmark import median_rates

__all__ = ['detection_speed', 'training_step_profile']


def _stages(net, x, ours):
    """{stage: step} of ``net`` on ``x``: each stage's inputs computed once beforehand."""
    if ours:
        features = net.features
        trunk_out = features.trunk(x)
        stages = dict(trunk=lambda: features.trunk(x),
                      fpn=lambda: features.fpn(*trunk_out))
        pyramid = features.fpn(*trunk_out)
    else:  # GluonCV's trunk and FPN are one SymbolBlock
        stages = dict(trunk_and_fpn=lambda: net.features(x))
        pyramid = net.features(x)
    zeros = mx.nd.zeros_like(x)
    stages['rpn'] = lambda: net.rpn(zeros, *pyramid)
    return {name: (lambda step=step: _wait(step())) for name, step in stages.items()}


def _wait(outputs):
    for out in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        out.wait_to_read()


TORCHVISION_MODEL = 'fasterrcnn_resnet50_fpn'


def detection_speed(backbone='resnest50', size=(800, 1216), warmup=1, repeats=3, seed=0,
                    peer_python=None):
    """JSON-ready records of GluonCV's ``faster_rcnn_fpn_syncbn_<backbone>_coco`` and ours with
    the same random weights (GluonCV's saved file loaded into ours strictly), both hybridized,
    on one image of ``size`` (height, width): seconds per image and per stage, the number
    of detections (equal weights, equal work) and GMACs. With ``peer_python`` (the peers'
    environment) torchvision's TORCHVISION_MODEL is timed in the same rounds."""
    from contextlib import ExitStack
    from gluoncv.model_zoo.rcnn.faster_rcnn import predefined_models
    from .benchmark import PeerProcess
    from ..detection import get_detection_model
    mx.random.seed(seed)
    theirs = getattr(predefined_models, 'faster_rcnn_fpn_syncbn_%s_coco' % backbone)(
        pretrained=False, pretrained_base=False)
    theirs.initialize()
    theirs(mx.nd.zeros((1, 3, 64, 64)))
    handle, path = tempfile.mkstemp(suffix='.params')
    os.close(handle)
    try:
        theirs.save_parameters(path)
        ours = get_detection_model('faster_rcnn_fpn', backbone=backbone, pretrained=path)
    finally:
        os.remove(path)
    x = mx.nd.array(np.random.RandomState(seed).uniform(-2, 2, (1, 3) + tuple(size)))
    nets = (('gluoncv', theirs, False), ('ours', ours, True))
    for _, net, _ in nets:
        net.hybridize(static_alloc=True, static_shape=True)
    steps = [lambda net=net: _wait(net(x)) for _, net, _ in nets]
    with ExitStack() as stack:
        peer = None
        if peer_python:
            peer = stack.enter_context(PeerProcess(peer_python, TORCHVISION_MODEL, 'torchvision',
                                                   'inference', 1, size[0], width=size[1]))
            steps.append(peer.step())
        totals = median_rates(steps, 1, warmup, repeats)
    records = []
    for (name, net, is_ours), rate in zip(nets, totals):
        stages = _stages(net, x, is_ours)
        stage_rates = median_rates(list(stages.values()), 1, warmup, repeats)
        seconds = {stage: round(r['median_ms'] / 1e3, 3) for stage, r in zip(stages, stage_rates)}
        total = rate['median_ms'] / 1e3
        seconds['roi_head'] = round(total - sum(seconds.values()), 3)
        ids = net(x)[0].asnumpy()
        records.append(dict(model=name, backbone=backbone, size=list(size),
                            seconds_per_image=round(total, 3), stage_seconds=seconds,
                            detections=int((ids >= 0).sum()), repeats=repeats,
                            gmacs=round(count_flops(net, x.shape, convention='macs') / 1e9, 2)))
    if peer:
        info = {k: v for k, v in peer.info.items() if k not in ('ready', 'steps')}
        records.append(dict(info, model='torchvision', size=list(size),
                            seconds_per_image=round(totals[-1]['median_ms'] / 1e3, 3),
                            repeats=repeats, weights='random; trunk ResNet-50, box '
                            'head 2fc: context, not the same network'))
    return records


def training_step_profile(model='mask_rcnn_fpn', backbone='resnest14_small', head='light',
                          size=128, batch_size=4, classes=10, objects=3, steps=10, warmup=2,
                          seed=0, **settings):
    """Where a detector's training step goes: the median seconds of a step (forward, the
    detector's losses, backward, SGD) on ``batch_size`` random ``size`` px images with
    ``objects`` random boxes (and their masks) each, and MXNet's per-operator totals per step.
    ``settings``: get_detection_model's (e.g. the instance demo's ``num_sample=128``)."""
    import time
    from mxnet import autograd
    from ..detection import DetectionTargets, get_detection_model
    from ..detection.model import MASK_MODELS, initialize_for_training
    from .profile import profile_operators
    rng = np.random.RandomState(seed)
    mx.random.seed(seed)
    net = get_detection_model(model, backbone=backbone, classes=classes, head=head,
                              per_device_batch_size=batch_size, max_size=size, **settings)
    initialize_for_training(net)
    corners = rng.uniform(0, size / 2.0, (batch_size, objects, 2))
    extents = rng.uniform(size / 8.0, size / 2.0, (batch_size, objects, 2))
    boxes = np.concatenate([corners, corners + extents], axis=-1).astype(np.float32)
    masks = None
    if model in MASK_MODELS:
        masks = np.zeros((batch_size, objects, size, size), np.float32)
        for i, j in np.ndindex(batch_size, objects):
            x1, y1, x2, y2 = boxes[i, j].astype(int)
            masks[i, j, y1:y2, x1:x2] = 1
    targets = DetectionTargets(mx.nd.array(boxes), mx.nd.array(
        rng.randint(0, classes, (batch_size, objects, 1))), None if masks is None
        else mx.nd.array(masks), [(size, size)] * batch_size)
    images = mx.nd.array(rng.normal(size=(batch_size, 3, size, size)))
    trainer = mx.gluon.Trainer(net._collect_params_with_prefix(), 'sgd',
                               dict(learning_rate=0.001, momentum=0.9))
    times = []

    def step():
        tic = time.time()
        with autograd.record():
            loss = mx.nd.add_n(*net(images, targets).values())
        loss.backward()
        trainer.step(batch_size)
        mx.nd.waitall()
        times.append(time.time() - tic)
    for _ in range(warmup + steps):
        step()
    seconds = float(np.median(times[warmup:]))
    rows = profile_operators(step, iterations=3, warmup=0)
    return dict(model=model, backbone=backbone, head=head, size=size, batch_size=batch_size,
                engine=os.environ.get('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice'),
                step_seconds=round(seconds, 4),
                operators_ms_per_step={name: round(ms, 1) for name, _, ms in rows[:12]})
