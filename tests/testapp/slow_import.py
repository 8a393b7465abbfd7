"""A module that takes ``SLOW_CHILD_IMPORT`` seconds to import in a worker's pool children (and
no time in the worker's main process), as a big app does on a busy machine."""

import multiprocessing
import os
import time

if multiprocessing.parent_process() is not None:
    # The fault itself (an import that takes this long), not a wait for a condition.
    time.sleep(float(os.environ.get("SLOW_CHILD_IMPORT", "0")))
