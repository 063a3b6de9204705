"""The trust circle on the legacy side: client certificates, the allow-list, scopes, rate limits, audit."""
