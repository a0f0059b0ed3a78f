# Developer tools the tests need (included by the Makefile).

.PHONY: browser
browser: ## install Debian's chromium for the status-page browser test when missing
	command -v chromium || (apt-get update && apt-get install -y chromium)
