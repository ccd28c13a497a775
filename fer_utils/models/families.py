"""Imports every model family module so their registrations run."""
from fer_utils.models import simple_cnn  # noqa: F401
from fer_utils.models import vgg  # noqa: F401
from fer_utils.models import timm_models  # noqa: F401
from fer_utils.models import efficientnet_lite  # noqa: F401
from fer_utils.models import mini_xception  # noqa: F401
from fer_utils.models import alexnet  # noqa: F401
from fer_utils.models import autoencoder  # noqa: F401
from fer_utils.models import onet  # noqa: F401
from fer_utils.models import temporal  # noqa: F401
