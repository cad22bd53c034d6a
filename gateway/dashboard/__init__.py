"""The operator dashboard: the page and its assets (static/) and the state JSON it polls."""
