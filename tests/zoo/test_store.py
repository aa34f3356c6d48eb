import dataclasses
import functools
import hashlib
import http.server
import os
import threading
import zipfile

import mxnet as mx
import numpy as np
import pytest

import gluon_resnest as gr
from gluon_resnest.zoo import registry, store
from helpers import randomize


@pytest.fixture
def published(tmp_path, monkeypatch):
    """resnest14 weights 'published' on a local mirror, the registry pointing at their hash."""
    net = gr.get_model('resnest14')
    net.initialize()
    randomize(net, seed=3)
    raw = str(tmp_path / 'raw.params')
    net.save_parameters(raw)
    sha1 = hashlib.sha1(open(raw, 'rb').read()).hexdigest()
    name = 'resnest14-%s' % sha1[:8]
    models = tmp_path / 'mirror' / 'gluon' / 'models'
    models.mkdir(parents=True)
    with zipfile.ZipFile(str(models / (name + '.zip')), 'w') as zf:
        zf.write(raw, name + '.params')
    info = dataclasses.replace(registry._REGISTRY['resnest14'], sha1=sha1)
    monkeypatch.setitem(registry._REGISTRY, 'resnest14', info)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(tmp_path / 'mirror'))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:%d/' % server.server_port)
    yield net, sha1, tmp_path / 'store'
    server.shutdown()


def _logits(net, x):
    return net(x).asnumpy()


def test_download_verify_and_load(published):
    net, sha1, root = published
    loaded = gr.get_model('resnest14', pretrained=True, root=str(root))
    x = mx.nd.random.uniform(shape=(1, 3, 64, 64))
    np.testing.assert_array_equal(_logits(loaded, x), _logits(net, x))
    assert sorted(os.listdir(str(root))) == ['resnest14-%s.params' % sha1[:8]]  # no leftovers


def test_string_tag_is_honored(published):
    _, sha1, root = published
    assert gr.get_model('resnest14', pretrained=sha1[:8], root=str(root)) is not None
    with pytest.raises(gr.PretrainedWeightsError, match='has no weights with that hash'):
        gr.get_model('resnest14', pretrained='deadbeef', root=str(root))
    with pytest.raises(gr.PretrainedWeightsError, match='first 8 hex digits'):
        gr.get_model('resnest14', pretrained='v1', root=str(root))


def test_a_file_that_does_not_match_its_hash_is_never_loaded(published, monkeypatch):
    _, sha1, root = published
    root.mkdir()
    bad = root / ('resnest14-%s.params' % sha1[:8])
    bad.write_bytes(b'not the published weights')
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')  # nothing listens there
    with pytest.raises(gr.PretrainedWeightsError, match='does not match its sha1'):
        gr.get_model('resnest14', pretrained=True, root=str(root))
    assert bad.read_bytes() == b'not the published weights'


def test_a_tampered_download_is_rejected(published, tmp_path):
    _, sha1, root = published
    name = 'resnest14-%s' % sha1[:8]
    archive = tmp_path / 'mirror' / 'gluon' / 'models' / (name + '.zip')
    with zipfile.ZipFile(str(archive), 'w') as zf:
        zf.writestr(name + '.params', b'tampered')
    with pytest.raises(gr.PretrainedWeightsError, match='does not match sha1'):
        gr.get_model('resnest14', pretrained=True, root=str(root))
    assert not (root / (name + '.params')).exists()


def test_offline_error_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')
    with pytest.raises(gr.PretrainedWeightsError) as err:
        gr.get_model('resnest50', pretrained=True, root=str(tmp_path))
    message = str(err.value)
    assert os.path.join(str(tmp_path), 'resnest50-bcfefe1d.params') in message
    assert 'bcfefe1dd1dd1ef5cfed5563123c1490ea37b42e' in message and 'MXNET_GLUON_REPO' in message


def test_mxnet_home_sets_the_default_root(published, monkeypatch, tmp_path):
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'home'))
    gr.get_model('resnest14', pretrained=True)
    assert os.listdir(str(tmp_path / 'home' / 'models'))


def test_other_class_count_keeps_the_backbone_and_a_fresh_classifier(published):
    net, _, root = published
    fine = gr.get_model('resnest14', pretrained=True, root=str(root), classes=10)
    assert fine.fc.weight.shape == (10, 2048)
    np.testing.assert_array_equal(fine.layer4[0].conv2.fc2.weight.data().asnumpy(),
                                  net.layer4[0].conv2.fc2.weight.data().asnumpy())
    assert fine(mx.nd.zeros((1, 3, 64, 64))).shape == (1, 10)
    backbone = gr.get_model('resnest14', pretrained=True, root=str(root), features_only=True)
    assert len(backbone(mx.nd.zeros((1, 3, 64, 64)))) == 4


def test_weights_that_do_not_fit_the_architecture_are_refused(published):
    _, _, root = published
    with pytest.raises(gr.PretrainedWeightsError, match='does not fit'):
        gr.get_model('resnest14', pretrained=True, root=str(root), radix=0)


def test_models_without_published_weights_say_so():
    with pytest.raises(gr.PretrainedWeightsError, match='resnetd50 has no published weights'):
        gr.get_model('resnetd50', pretrained=True)


def test_every_published_model_names_its_hash_and_repository():
    for name in gr.list_models():
        info = gr.get_model_info(name)
        if info.sha1:
            assert len(info.sha1) == 40 and info.weights_from in store.REPO_URLS
