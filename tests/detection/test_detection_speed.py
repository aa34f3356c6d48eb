"""The detection benchmark's figures: multiply-adds counted by hand, torchvision's count against
its published one, and torchvision timed through the peers' environment."""
import json
import os
import subprocess
import sys

import pytest

from gluon_resnest.analysis.flops import count_flops
from gluon_resnest.detection import get_detection_model
from helpers import ROOT

TRUNK_CHANNELS = {2: 256, 3: 512, 4: 1024, 5: 2048}  # ResNeSt-50's C2..C5


def _faster_rcnn_head_macs(height, width, fpn=256, proposals=1000, classes=80, box_units=1024,
                           box_convs=4, roi=7):
    """GluonCV's Faster R-CNN FPN on top of the trunk, counted by hand: per level a 1x1
    lateral and a 3x3 output convolution (P6: a stride-2 3x3 of C5's lateral), the RPN's 3x3
    convolution and its 1x1 scores (3 anchors) and offsets (12) on P2-P6, and per proposal the
    4conv1fc box head and the class (classes + 1) and class-specific box (4 classes) layers."""
    def side(n, stride):
        for _ in range(stride.bit_length() - 1):  # 'same' padding: halves rounded up
            n = -(-n // 2)
        return n
    area = {level: side(height, 2 ** level) * side(width, 2 ** level) for level in range(2, 7)}
    macs = sum(area[lv] * (TRUNK_CHANNELS[lv] * fpn + 9 * fpn * fpn) for lv in TRUNK_CHANNELS)
    macs += area[6] * 9 * fpn * fpn
    macs += sum(area[lv] * (9 * fpn * fpn + fpn * 3 + fpn * 12) for lv in area)
    per_roi = box_convs * roi * roi * 9 * fpn * fpn + roi * roi * fpn * box_units
    per_roi += box_units * (classes + 1) + box_units * 4 * classes
    return macs + proposals * per_roi


def test_faster_rcnn_multiply_adds_are_the_trunk_and_a_hand_count_of_the_rest():
    net = get_detection_model('faster_rcnn_fpn', backbone='resnest50')
    net.initialize()
    for height, width in ((128, 192), (200, 300)):
        shape = (1, 3, height, width)
        total = count_flops(net, shape, convention='macs')
        trunk = count_flops(net.features.trunk, shape, convention='macs')
        assert total - trunk == _faster_rcnn_head_macs(height, width)


PEER_STAND_IN = """#!/bin/sh
echo "$@" > {args}
echo '{{"ready": true, "steps": 1, "peer_model": "fasterrcnn_resnet50_fpn", "gmacs": 12.5}}'
while read command index; do
  [ "$command" = step ] || exit 0
  echo '{{"seconds": 0.5}}'
done
"""


@pytest.mark.slow
def test_benchmark_detection_times_torchvision_through_the_peers_environment(tmp_path):
    fake = tmp_path / 'python'
    fake.write_text(PEER_STAND_IN.format(args=tmp_path / 'args'))
    fake.chmod(0o755)
    cmd = [sys.executable, os.path.join(ROOT, 'eval', 'benchmark_detection.py'), '--short', '96',
           '--long', '160', '--repeats', '1', '--torchvision']
    proc = subprocess.run(cmd + ['--peer-python', str(fake)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gluoncv, ours, peer = [json.loads(line) for line in proc.stdout.splitlines()]
    assert (gluoncv['model'], ours['model'], peer['model']) == ('gluoncv', 'ours', 'torchvision')
    assert gluoncv['gmacs'] == ours['gmacs'] > 0 and gluoncv['detections'] == ours['detections']
    assert peer['seconds_per_image'] == 0.5 and peer['gmacs'] == 12.5 and 'ready' not in peer
    args = (tmp_path / 'args').read_text().split()
    assert args[0].endswith('peer_benchmark.py')
    for flag, value in (('--impl', 'torchvision'), ('--size', '96'), ('--width', '160'),
                        ('--batch-size', '1'), ('--model', 'fasterrcnn_resnet50_fpn')):
        assert args[args.index(flag) + 1] == value
    missing = subprocess.run(cmd + ['--peer-python', str(tmp_path / 'none')],
                             capture_output=True, text=True, timeout=900)
    assert missing.returncode != 0 and 'make bench-env' in missing.stderr
    assert 'Traceback' not in missing.stderr


PEERS = os.environ.get('GLUON_RESNEST_PEERS', os.path.join(ROOT, '.bench-venv', 'bin', 'python'))


@pytest.mark.skipif(not os.path.isfile(PEERS), reason="the peers' environment (make bench-env) "
                    'is not built')
def test_torchvision_count_is_its_published_figure():
    """torchvision publishes 134.38 G operations for fasterrcnn_resnet50_fpn (its weights' meta
    '_ops', an 800 x 800 image); the peer's count, halved from PyTorch's FLOP counter, is it."""
    script = ('import sys; sys.path.insert(0, %r); import peer_benchmark as pb; '
              "print(pb.detector_gmacs(*pb.torchvision_detector('fasterrcnn_resnet50_fpn', "
              '800, 800)))' % os.path.join(ROOT, 'gluon_resnest', 'analysis'))
    proc = subprocess.run([PEERS, '-c', script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) == pytest.approx(134.38, abs=0.01)
