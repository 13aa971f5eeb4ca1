from . import test_concurrency
from . import test_configuration
from . import test_corrections_ksef_payments
from . import test_sending
from . import test_webhook
