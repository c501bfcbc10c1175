"""The platform's protocol, pure and standard library only (an import-linter contract holds it).

``notify`` is the OnEventNotify push envelope (parse, rebuild); ``artemis`` the Artemis gateway's
request signing (what partners' clients send and what our pushes carry).
"""
