"""The web shell: the app factory, the admin API, sign-in cookies, the CLI and the server.

It calls the domain (`identity`), which never imports it. Nothing is imported here, so that a
protocol adapter importing `identity.web.context` does not load the app factory with it.
"""
