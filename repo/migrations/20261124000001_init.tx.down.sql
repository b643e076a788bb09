DROP TABLE IF EXISTS outbox, requests, ledger, sessions, permit_years, permits, registrations, addresses, zones;
