"""jobkit's schema, made by ``manage.py migrate``: jobkit's own migrations (run again after
every ``migrate``, so a newer jobkit's are applied too), the task return values' table, and
the admin's models, which have no table."""

from django.db import migrations, models

from jobkit_django.schema import run_migrations


def admin_model(name: str, verbose_name: str, plural: str) -> migrations.CreateModel:
    return migrations.CreateModel(
        name=name,
        fields=[("id", models.BigAutoField(auto_created=True, primary_key=True))],
        options={
            "managed": False,
            "verbose_name": verbose_name,
            "verbose_name_plural": plural,
            "default_permissions": ("view", "change"),
        },
    )


class Migration(migrations.Migration):
    initial = True
    atomic = False  # jobkit's migrations build some indexes CONCURRENTLY, on their own
    dependencies: list = []

    operations = [
        migrations.RunPython(run_migrations, migrations.RunPython.noop, atomic=False),
        migrations.CreateModel(
            name="TaskReturnValue",
            fields=[
                ("job_id", models.UUIDField(primary_key=True, serialize=False)),
                ("return_value", models.JSONField(null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        admin_model("JobRequest", "request (waiting job)", "requests (waiting jobs)"),
        admin_model("JobProcess", "running attempt", "running attempts"),
        admin_model("JobResult", "result", "results"),
        admin_model("Queue", "queue", "queues"),
    ]
