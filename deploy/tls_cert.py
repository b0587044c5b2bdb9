"""Make a self-signed TLS certificate for nginx on first start, unless one is there already.

Run by the one-shot compose service `tls-cert` before nginx starts:

    python deploy/tls_cert.py /srv/certs localhost

writes `fullchain.pem` and `privkey.pem` (the names certbot uses) into the folder when either is
missing, and leaves a certificate that is there alone, so a real one mounted in its place
(`TLS_CERT_DIR` in .env) is never touched. Browsers warn about the self-signed one until then.
"""

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT, KEY = "fullchain.pem", "privkey.pem"


def subject_names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    return list(dict.fromkeys(names))


def ensure_certificate(folder: Path, host: str, days: int = 825) -> bool:
    """Write a self-signed certificate for `host` into `folder`; False when one was already there."""
    if (folder / CERT).exists() and (folder / KEY).exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(subject_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_path = folder / KEY
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / CERT).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return True


if __name__ == "__main__":
    target, host = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "localhost")
    made = ensure_certificate(target, host)
    print(f"{'made a self-signed' if made else 'kept the'} certificate in {target}")
