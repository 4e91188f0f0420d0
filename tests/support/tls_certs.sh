#!/bin/sh
# SPDX-License-Identifier: LGPL-3.0-or-later
# Generate throwaway test certificates into directory $1 (nothing is committed):
#   ca.pem/ca.key        the CA every good certificate chains to
#   server.pem/.key      localhost + 127.0.0.1, valid now
#   expired.pem/.key     localhost + 127.0.0.1, expired in 2020
#   wronghost.pem/.key   wronghost.example only
#   client.pem/.key      a client certificate for mutual TLS
#   other-ca.pem         an unrelated CA (the "wrong CA" case)
set -eu
d=$1
cd "$d"
q() { "$@" >/dev/null 2>&1 || { echo "tls_certs.sh: failed: $*" >&2; exit 1; }; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=dray test CA"
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=other CA"
cat > ca.cnf <<CNF
[ ca ]
default_ca = tca
[ tca ]
dir = $d
database = $d/index.txt
new_certs_dir = $d
serial = $d/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
[ srv ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = \$ENV::SAN
CNF
: > index.txt
echo 1000 > serial
mk() { # name CN SAN startdate enddate
    q openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
    SAN=$3 q openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -extensions srv \
        -startdate "$4" -enddate "$5" -in "$1.csr" -out "$1.pem" -notext
}
mk server localhost "DNS:localhost,IP:127.0.0.1" 20200101000000Z 20991231000000Z
mk expired localhost "DNS:localhost,IP:127.0.0.1" 20200101000000Z 20200102000000Z
mk wronghost wronghost.example "DNS:wronghost.example" 20200101000000Z 20991231000000Z
mk client "dray client" "DNS:client.example" 20200101000000Z 20991231000000Z
chmod 600 ./*.key
