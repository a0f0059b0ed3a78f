# Developer tools the tests need (included by the Makefile).

.PHONY: browser
browser: ## install Debian's chromium for the status-page browser test when missing
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "browser: installing Debian's chromium (status-page browser test)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
