#!/bin/sh
# Installs the SOAP stacks of the interop lab (tests/interop): Debian packages, then the pinned npm package.
# A no-op when everything is present; `make interop-install` and `make test` call it. Needs root (apt-get)
# only when a package is missing.
set -eu

# What each Debian 12 package brings, tested by a command on PATH or a file: a package is installed only when
# its probe is missing (a machine may have a JDK or Node.js from elsewhere, e.g. NodeSource's nodejs, which
# conflicts with Debian's npm).
CHECKS="
wsdl:mono-devel
javac:default-jdk-headless
/usr/share/java/jaxws-tools.jar:libjaxws-java
/usr/share/java/axis.jar:libaxis-java
/usr/share/java/wsdl4j.jar:libwsdl4j-java
/usr/share/java/commons-discovery.jar:libcommons-discovery-java
/usr/share/java/commons-logging.jar:libcommons-logging-java
/usr/share/java/javax.activation.jar:libactivation-java
/usr/share/java/javax.mail.jar:libmail-java
/usr/share/java/jaxb-api.jar:libjaxb-api-java
/usr/share/perl5/SOAP/Lite.pm:libsoap-lite-perl
wsdl2h:gsoap
/usr/include/stdsoap2.h:libgsoap-dev
g++:g++
php:php-cli
/usr/share/php-soap-probe:php-soap
node:nodejs
npm:npm
"

missing=""
for check in $CHECKS; do
    probe=${check%%:*}
    package=${check#*:}
    case "$probe" in
        /usr/share/php-soap-probe)
            if command -v php >/dev/null 2>&1 && php -r 'exit(class_exists("SoapClient") ? 0 : 1);'; then continue; fi ;;
        /*) if [ -e "$probe" ]; then continue; fi ;;
        *) if command -v "$probe" >/dev/null 2>&1; then continue; fi ;;
    esac
    missing="$missing $package"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != "0" ]; then
        echo "interop lab: missing Debian packages:$missing" >&2
        echo "run as root: apt-get update && apt-get install -y --no-install-recommends$missing" >&2
        exit 1
    fi
    echo "interop lab: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -q --no-install-recommends $missing
fi

here=$(dirname "$0")
if [ ! -f "$here/node/node_modules/soap/package.json" ] || [ "$here/node/package-lock.json" -nt "$here/node/node_modules/.package-lock.json" ]; then
    (cd "$here/node" && npm ci --no-audit --no-fund --ignore-scripts)
fi
