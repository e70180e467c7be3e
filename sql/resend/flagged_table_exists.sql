SELECT to_regclass('mailtrace.flagged_address') IS NOT NULL
