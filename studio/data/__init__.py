"""Datasets as folders, the dataset catalogue, and the embedded default sample.

    from studio.data import open_dataset, EMBEDDED_NAME
    ds = open_dataset()                      # the embedded sample (the default everywhere)
    ds = open_dataset("../shared/datasets/sod-dev", limit=20, seed=0)
    ds = open_dataset("DUTS-TE")             # a catalogue set under studio.settings.data_dir()
    for s in ds: s.image(), s.mask(), s.alpha(), s.content_hash

See `layout.py` for the folder layouts read, `catalogue.py` for the catalogue and contamination flags, and
`embedded.py` for how the sample is made.
"""

from studio.data.catalogue import (
    CatalogEntry,
    catalog,
    effective_trained_on,
    find_entry,
    recognise,
    trained_on_flag,
)
from studio.data.dataset import (
    EMBEDDED_NAME,
    Dataset,
    Sample,
    SampleError,
    embedded_sample,
    open_dataset,
    subset,
    write_sample,
)
from studio.data.layout import DatasetError

__all__ = [
    "EMBEDDED_NAME",
    "CatalogEntry",
    "Dataset",
    "DatasetError",
    "Sample",
    "SampleError",
    "catalog",
    "effective_trained_on",
    "embedded_sample",
    "find_entry",
    "open_dataset",
    "recognise",
    "subset",
    "trained_on_flag",
    "write_sample",
]
