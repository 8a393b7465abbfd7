"""A module that takes ``SLOW_CHILD_IMPORT`` seconds to import in a worker's pool children (and
no time in the worker's main process), as a big app does on a busy machine."""

import multiprocessing
import os
import time

if multiprocessing.parent_process() is not None:
    time.sleep(float(os.environ.get("SLOW_CHILD_IMPORT", "0")))
