import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.services import demo_user_ensure


class Command(BaseCommand):
    help = "Create the demo account (or reset its password) and print its credentials."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="", help="default: a new random password")

    def handle(self, *args, password, **options):
        password = password or secrets.token_urlsafe(9)
        demo_user_ensure(username=settings.DEMO_USERNAME, password=password)
        self.stdout.write(f"Demo account: username {settings.DEMO_USERNAME!r}, password {password!r}")
