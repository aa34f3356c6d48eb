"""Segmentation: GluonCV weight parity, any input size, metrics, multi-scale inference, losses,
data readers and transforms, scenes, export."""
import json
import os

import numpy as np
import pytest
from PIL import Image


def test_scene_labels_are_the_visible_garments():
    from experiments.scenes import compose_scene
    garments = np.zeros((3, 28, 28), np.uint8)
    garments[:, 4:24, 4:24] = 200
    labels = np.array([2, 5, 7])
    image, label_map = compose_scene(np.random.RandomState(0), garments, labels, size=64)
    assert image.shape == (64, 64, 3) and label_map.shape == (64, 64)
    present = set(np.unique(label_map)) - {0}
    assert present and present <= {3, 6, 8}  # class + 1
    # labelled pixels are garment pixels (brighter than the threshold; resized edges are
    # in between), the rest is the faint background
    assert (image[..., 0][label_map > 0] > 20).all()
    assert (image[..., 0][label_map == 0] < 24).all()


def test_a_dark_print_inside_a_garment_is_labelled_garment():
    from experiments.scenes import compose_scene
    garment = np.zeros((1, 28, 28), np.uint8)
    garment[0, 2:26, 2:26] = 200
    garment[0, 10:18, 10:18] = 0  # enclosed dark pixels
    image, label_map = compose_scene(np.random.RandomState(1), garment, np.array([4]), size=28,
                                     max_items=1, max_scale=1.0)
    assert (label_map[2:26, 2:26] == 5).all() and (label_map[:2] == 0).all()
    assert (image[10:18, 10:18] == 0).all()  # the garment's own dark print, not background


@pytest.mark.slow
def test_the_demo_end_to_end_small_under_two_processes(tmp_path, capfd):
    """The demo's whole flow on a small fake Fashion-MNIST: scenes, garment pretraining and
    DeepLabV3 training under horovodrun -np 2 (python -m gluon_resnest.commands...), test
    scenes evaluated once per mode across both ranks, export, summary."""
    from helpers import require_horovodrun, write_raw_fashion_mnist
    from experiments.scenes_demo import run_demo
    require_horovodrun()
    rng = np.random.RandomState(0)
    labels = np.repeat(np.arange(10), 12).astype(np.uint8)
    garments = (rng.rand(len(labels), 28, 28) * 60).astype(np.uint8)
    garments[:, 6:22, 8:20] += (100 + 10 * labels)[:, None, None]  # a bright body per class
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), garments, labels)
    summary = run_demo(str(tmp_path / 'scenes'), str(tmp_path / 'run'), processes=2,
                       progress=False, log=lambda *_: None, scene_counts=(16, 8, 6),
                       source=src, pretrain=dict(epochs=1, batch_size=16, max_iters=2),
                       epochs=1, batch_size=4, max_iters=2)
    assert summary['processes'] == 2 and summary['epochs'] == 1
    for key in ('test_miou', 'test_miou_multi_scale_flip', 'val_miou'):
        assert 0 <= summary[key] <= 100
    # the scores are those the ranks wrote for the test split, one file per mode
    single = json.load(open(str(tmp_path / 'run' / 'test-single_scale.json')))
    multi = json.load(open(str(tmp_path / 'run' / 'test-multi_scale_flip.json')))
    assert single['split'] == multi['split'] == 'test' and multi['multi_scale']
    assert round(single['miou'], 2) == summary['test_miou']
    assert single['pixels'] == 6 * 64 * 64  # every test pixel once, across both ranks
    assert os.path.isfile(summary['symbol']) and os.path.isfile(summary['params'])
    picture = Image.open(summary['test_scenes_picture'])  # test scenes beside their truth
    assert picture.size[0] > 3 * 64 and picture.size[1] > 6 * 64
    # the pretraining launched again: both ranks resume a finished run and exit cleanly
    from experiments.scenes import build_pretraining_records
    from experiments.scenes_demo import _pretrain
    log = tmp_path / 'run' / 'pretrain' / 'ranks.log'
    before = log.read_text()
    capfd.readouterr()
    _pretrain(build_pretraining_records(str(tmp_path / 'scenes' / 'pretrain'), source=src),
              str(tmp_path / 'run' / 'pretrain'), 'resnest14_small', 2, 0, False,
              dict(epochs=1, batch_size=16, max_iters=2))
    again = log.read_text()[len(before):] + ''.join(capfd.readouterr())
    assert 'resumed from' in again and 'Traceback' not in again, again[-3000:]


def test_the_demo_command_passes_its_epochs_to_pretraining_and_segmentation(monkeypatch,
                                                                              tmp_path):
    from experiments import segmentation_demo as command
    from experiments.scenes_demo import DEMO
    calls = []
    monkeypatch.setattr(command, 'run_demo', lambda *args, **kwargs: calls.append(kwargs) or {})
    monkeypatch.setattr(command, 'compare_backbones',
                        lambda *args, **kwargs: calls.append(kwargs) or {'mean_std': {}})
    command.main(['--save-dir', str(tmp_path), '--pretrain-epochs', '6', '--epochs', '14'])
    command.main(['--save-dir', str(tmp_path), '--compare', '--pretrain-epochs', '5'])
    assert calls[0]['pretrain'] == {'epochs': 6} and calls[0]['epochs'] == 14
    assert calls[1]['pretrain'] == {'epochs': 5} and calls[1]['epochs'] == DEMO['epochs']
