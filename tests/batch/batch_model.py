"""``test-counted``: the ``test-red`` model (output known from the red channel) that appends one
line per model call to the file named in ``$RRSIS_TEST_CALLS`` and sleeps ``$RRSIS_TEST_DELAY``
seconds per call: the batch tests count calls across worker processes and get time to kill one.
``$RRSIS_TEST_SPANS`` names a file that gets "pid thread start end torch-threads GDAL_CACHEMAX"
(wall seconds; "-" for an unset variable) per finished call: which calls of one worker ran at the
same time, and with what settings."""

from __future__ import annotations

import os
import threading
import time

from geo_testdata import RedModel
from rrsis_geo.models import register_model

CALLS_ENV = "RRSIS_TEST_CALLS"
DELAY_ENV = "RRSIS_TEST_DELAY"
SPANS_ENV = "RRSIS_TEST_SPANS"


class CountedRedModel(RedModel):
    def segment(self, images, text):
        started = time.time()
        path = os.environ.get(CALLS_ENV)
        if path:
            with open(path, "a") as calls:  # one short line per call: O_APPEND keeps lines whole
                calls.write(f"{os.getpid()} {images.shape[0]}\n")
        delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        if delay:
            time.sleep(delay)
        result = super().segment(images, text)
        spans = os.environ.get(SPANS_ENV)
        if spans:
            with open(spans, "a") as out:
                import torch

                settings = f"{torch.get_num_threads()} {os.environ.get('GDAL_CACHEMAX') or '-'}"
                out.write(f"{os.getpid()} {threading.get_ident()} {started:.6f} {time.time():.6f} {settings}\n")
        return result


@register_model("test-counted")
def build_test_counted(config, load_pretrained=False):
    return CountedRedModel(config)
