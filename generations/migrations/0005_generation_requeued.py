from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0004_workers"),
    ]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="requeued",
            field=models.BooleanField(
                default=False,
                help_text="Queued again after a lost or failed attempt: goes first in its priority",
            ),
        ),
    ]
