-- A neutralized copy of a database must never talk to the real inFakt account.
UPDATE infakt_account
   SET api_key = NULL,
       webhook_secret = NULL,
       environment = 'sandbox',
       api_url = NULL,
       auto_send = false,
       connection_state = 'untested',
       webhook_verified_at = NULL,
       webhook_token = md5(random()::text || id::text || clock_timestamp()::text);
