#!/usr/bin/env bash
# Make a private CA and a server certificate for Redis's TLS port (6380), valid for DOMAIN.
#
#   deploy/redis/make-certs.sh workshop.example.com [OUT_DIR]
#
# Writes ca.crt, ca.key, redis.crt, redis.key into OUT_DIR (default: deploy/redis/tls). Copy
# ca.crt to every GPU worker and point REDIS_URL at it:
#   rediss://:PASSWORD@workshop.example.com:6380/0?ssl_ca_certs=/etc/workshop/redis-ca.crt
# Keep ca.key off the GPU hosts (it signs certificates). Re-running keeps an existing CA.
set -euo pipefail

domain="${1:?usage: $0 DOMAIN [OUT_DIR]}"
out="${2:-$(dirname "$0")/tls}"
days="${CERT_DAYS:-90}"
mkdir -p "$out"
umask 077

if [[ ! -f "$out/ca.key" ]]; then
    openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 825 \
        -keyout "$out/ca.key" -out "$out/ca.crt" -subj "/CN=workshop redis CA"
fi

openssl req -newkey rsa:3072 -sha256 -nodes \
    -keyout "$out/redis.key" -out "$out/redis.csr" -subj "/CN=$domain"
printf 'subjectAltName=DNS:%s,DNS:redis,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
    "$domain" >"$out/redis.ext"
openssl x509 -req -sha256 -days "$days" -in "$out/redis.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -CAcreateserial -extfile "$out/redis.ext" -out "$out/redis.crt"
rm -f "$out/redis.csr" "$out/redis.ext"

# Private to root on the host; the redis container copies them for its own user when it starts.
echo "certificates in $out (server certificate for $domain, valid $days days)"
