"""jobkit for Django: settings and database from Django, transactional enqueue inside
``transaction.atomic()``, jobs found in every installed app's ``jobs.py``, admin pages, and a
``django.tasks`` backend (``jobkit_django.tasks.JobkitBackend``)."""
