# shellcheck shell=bash
# Development TLS material for the infrastructure's instances (PostgreSQL, Kafka, Consul,
# Jaeger), made with the openssl command: a private CA per instance and leaf certificates it
# signs. The roles' own certificates come from `agora certs`; these are for the servers Agora
# connects to, which want ordinary DNS/IP names rather than SPIFFE identities.
#
#   tls_ca DIR                        DIR/ca.pem and DIR/ca-key.pem, made once
#   tls_leaf DIR NAME USAGE SAN...    DIR/NAME.pem and DIR/NAME-key.pem signed by DIR's CA, made
#                                     once; USAGE is server, client or both; each SAN is
#                                     DNS:NAME or IP:ADDR (the first one is also the subject CN)
#   tls_server DIR NAME USAGE HOST    a server's tls_leaf for the address HOST, localhost and
#                                     127.0.0.1, issued again when it does not name HOST (the
#                                     bind address changed)
#
# Keys are P-256, PKCS#8 and unencrypted, readable by the owner only. Certificates last 825
# days (a development instance is reset long before). Requires the openssl command, installed
# with apt-get when it is missing and this runs as root.

tls_require_openssl() {
  command -v openssl >/dev/null && return
  [[ "$(id -u)" -eq 0 ]] || die "the openssl command is needed (apt-get install openssl)"
  log "installing openssl (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
}

tls_ca() {
  local dir="$1"
  [[ -s "$dir/ca.pem" && -s "$dir/ca-key.pem" ]] && return
  tls_require_openssl
  mkdir -p "$dir"
  (
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca-key.pem.tmp" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca-key.pem.tmp" -sha256 -days 825 -subj "/O=Agora development/CN=Agora development CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$dir/ca.pem.tmp" 2>/dev/null
  ) || die "openssl could not make a CA in $dir"
  chmod 644 "$dir/ca.pem.tmp"
  mv "$dir/ca-key.pem.tmp" "$dir/ca-key.pem"
  mv "$dir/ca.pem.tmp" "$dir/ca.pem"
}

tls_leaf() {
  local dir="$1" name="$2" usage="$3"
  shift 3
  (($#)) || die "tls_leaf $name: no subject alternative name"
  [[ -s "$dir/$name.pem" && -s "$dir/$name-key.pem" ]] && return
  tls_ca "$dir"
  local eku
  case "$usage" in
    server) eku=serverAuth ;;
    client) eku=clientAuth ;;
    both) eku=serverAuth,clientAuth ;;
    *) die "tls_leaf $name: usage '$usage' is not server, client or both" ;;
  esac
  local cn="${1#*:}" sans
  sans="$(IFS=,; printf '%s' "$*")"
  local ext
  ext="$(mktemp)"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$eku" "$sans" >"$ext"
  (
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name-key.pem.tmp" 2>/dev/null
    openssl req -new -key "$dir/$name-key.pem.tmp" -subj "/O=Agora development/CN=$cn" -out "$dir/$name.csr" 2>/dev/null
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial -sha256 \
      -days 825 -extfile "$ext" -out "$dir/$name.pem.tmp" 2>/dev/null
  ) || { rm -f "$ext"; die "openssl could not issue $name in $dir"; }
  rm -f "$ext" "$dir/$name.csr"
  chmod 644 "$dir/$name.pem.tmp"
  mv "$dir/$name-key.pem.tmp" "$dir/$name-key.pem"
  mv "$dir/$name.pem.tmp" "$dir/$name.pem"
}

tls_server() {
  local dir="$1" name="$2" usage="$3" host="$4"
  local sans=("IP:$host" DNS:localhost)
  [[ "$host" == 127.0.0.1 ]] || sans+=(IP:127.0.0.1)
  if [[ -s "$dir/$name.pem" ]] \
    && [[ "$(openssl x509 -in "$dir/$name.pem" -noout -checkip "$host" 2>/dev/null)" != *' does match'* ]]; then
    log "the certificate $dir/$name.pem does not name $host; issuing a new one"
    rm -f "$dir/$name.pem" "$dir/$name-key.pem"
  fi
  tls_leaf "$dir" "$name" "$usage" "${sans[@]}"
}
