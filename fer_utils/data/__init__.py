"""Datasets as uint8 arrays plus metadata, splits, clips, and device-side batching/augmentation."""
from fer_utils.data.augment import BatchAugment, BatchMix, create_augment, list_augments, to_model_input
from fer_utils.data.clips import make_clips
from fer_utils.data.dataset import META_COLUMNS, FaceData
from fer_utils.errors import DatasetError, MissingDatasetError
from fer_utils.data.fer2013 import FER2013_CLASSES, FER2013_SPLITS, official_test_split
from fer_utils.data.iterator import BatchIterator
from fer_utils.data.paths import DATA_DIR_ENV, data_root
from fer_utils.data.prepared import load_prepared_faces
from fer_utils.data.preprocessing import DEFAULT_MARGIN, Preprocessing
from fer_utils.data.registry import list_datasets, load_dataset
from fer_utils.data.splits import (
    leave_one_subject_out, random_subset, stratified_holdout, subject_holdout, subject_kfold, subset_subjects,
    training_holdout,
)

__all__ = [
    "BatchAugment", "BatchIterator", "BatchMix", "DATA_DIR_ENV", "DEFAULT_MARGIN", "DatasetError", "FER2013_CLASSES", "FER2013_SPLITS",
    "FaceData", "META_COLUMNS", "MissingDatasetError", "Preprocessing", "create_augment", "data_root", "leave_one_subject_out",
    "list_augments", "list_datasets", "load_dataset", "load_prepared_faces", "make_clips", "official_test_split", "random_subset",
    "stratified_holdout", "subject_holdout", "subject_kfold", "subset_subjects", "to_model_input", "training_holdout",
]
