# `make test` and `make main` set everything up on first use (tools/install.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
# the env's tools (horovodrun) on PATH for everything make runs
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup test main segmentation-demo instance-demo bench-env
setup: $(VENV)/.installed

$(VENV)/.installed: setup.py tools/install.sh
	bash tools/install.sh $(VENV)
	touch $@

test: setup
	$(PY) -m pytest -q

# the main job: Fashion-MNIST -> 2-process Horovod training -> test -> export -> summary
main: setup
	$(PY) train/fashion_mnist.py $(ARGS)

# segmentation demo: Fashion-MNIST scenes -> DeepLabV3 (2 Horovod processes) -> test -> export
segmentation-demo: setup
	$(PY) train/segmentation_demo.py $(ARGS)

# instance demo: Fashion-MNIST instance scenes -> Mask R-CNN FPN (2 Horovod processes) -> test
# (box and mask AP) -> picture -> export
instance-demo: setup
	$(PY) train/instance_demo.py $(ARGS)

# the peers' separate environment (torch, timm, onnxruntime) for eval/benchmark.py --compare timm
bench-env:
	bash tools/bench-env.sh .bench-venv
