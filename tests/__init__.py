from . import test_sending
