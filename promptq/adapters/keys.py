"""Users' own OpenRouter keys, encrypted at rest: the only module that sees one in the clear
(besides the upstream client it is handed to).

Envelope encryption: each key is encrypted (AES-256-GCM) with a fresh data key; the data key is
wrapped by a key-encryption key (KEK) that never leaves its keeper, Cloud KMS in production
(``PROMPTQ_KMS_KEY``), a local AES key on the local stack (``PROMPTQ_LOCAL_KEK``). Both
layers bind the user's id as associated data, so a ciphertext copied to another user's
document does not decrypt. The document ``keys/{uid}`` is server-only (no rule lets a client
read it); only a label (the key's last 4 characters) ever leaves.
"""

from __future__ import annotations

import base64
import functools
import os
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud import firestore

from promptq.adapters.cas import write_one
from promptq.domain import redact
from promptq.domain.records import utcnow
from promptq.contract import KEYS, KeyField
from promptq.contract.webhooks import SecretField

NONCE_BYTES = 12
PUBLIC = (KeyField.LABEL, KeyField.CREATED_AT, KeyField.LIMIT, KeyField.LIMIT_REMAINING, KeyField.USAGE)  # what may leave keys/{uid}


def label_of(api_key: str) -> str:
    return f"…{api_key[-4:]}"


class Kek(Protocol):
    name: str

    def wrap(self, data_key: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes: ...


class LocalKek:
    """A local AES-256 key-encryption key (the local stack; tests)."""

    name = "local"

    def __init__(self, key_b64: str):
        key = base64.b64decode(key_b64)
        if len(key) != 32:
            raise ValueError("PROMPTQ_LOCAL_KEK must be base64 of 32 bytes")
        self._aes = AESGCM(key)

    @staticmethod
    def generate() -> str:
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aes.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return self._aes.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)


class KmsKek:
    """A Cloud KMS symmetric key (``projects/P/locations/L/keyRings/R/cryptoKeys/K``): the
    callables' service account may encrypt with it (``roles/cloudkms.cryptoKeyEncrypter``:
    set_api_key wraps), only the worker's may decrypt (``roles/cloudkms.cryptoKeyDecrypter``)."""

    def __init__(self, key_name: str):
        self.name = key_name

    @functools.cached_property
    def _client(self):
        from google.cloud import kms  # only where a KMS key is configured

        return kms.KeyManagementServiceClient()

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        return self._client.encrypt(request={"name": self.name, "plaintext": data_key, "additional_authenticated_data": aad}).ciphertext

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return self._client.decrypt(request={"name": self.name, "ciphertext": wrapped, "additional_authenticated_data": aad}).plaintext


def seal(kek: Kek, plaintext: str, aad: bytes) -> dict[str, Any]:
    """``plaintext`` encrypted as a user's key is (a fresh data key wrapped by ``kek``, both
    layers bound to ``aad``): the map a document stores (``SecretField``). Webhook secrets."""
    data_key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(NONCE_BYTES)
    return {
        SecretField.CIPHERTEXT: AESGCM(data_key).encrypt(nonce, plaintext.encode(), aad),
        SecretField.NONCE: nonce,
        SecretField.WRAPPED_KEY: kek.wrap(data_key, aad),
        SecretField.KEK: kek.name,
    }


def unseal(kek: Kek, sealed: dict[str, Any], aad: bytes) -> str:
    """What ``seal`` sealed (only with the decrypting role's KEK: Cloud KMS checks it)."""
    data_key = kek.unwrap(sealed[SecretField.WRAPPED_KEY], aad)
    return AESGCM(data_key).decrypt(sealed[SecretField.NONCE], sealed[SecretField.CIPHERTEXT], aad).decode()


def kek_from(kms_key: str, local_kek: str) -> Kek | None:
    """The configured KEK: Cloud KMS if named, else the local one, else none (no user keys)."""
    if kms_key:
        return KmsKek(kms_key)
    return LocalKek(local_kek) if local_kek else None


class KeyVault:
    def __init__(self, client: firestore.Client, kek: Kek | None):
        self.client = client
        self.kek = kek

    def ref(self, uid: str) -> firestore.DocumentReference:
        return self.client.collection(KEYS).document(uid)

    def put(self, uid: str, api_key: str, about: dict[str, Any] | None = None) -> dict[str, Any]:
        """Encrypt and store the user's key (replacing theirs), with what OpenRouter said of it
        (``about``: ``KeyField.LIMIT``...); returns the stored document's public part. Wrapping needs
        only encryption with the KEK (the callables' service account may not decrypt)."""
        if self.kek is None:
            raise RuntimeError("no key-encryption key configured (PROMPTQ_KMS_KEY)")
        aad = uid.encode()
        data_key, nonce = AESGCM.generate_key(bit_length=256), os.urandom(NONCE_BYTES)
        doc = {
            KeyField.LABEL: label_of(api_key),
            KeyField.CIPHERTEXT: AESGCM(data_key).encrypt(nonce, api_key.encode(), aad),
            KeyField.NONCE: nonce,
            KeyField.WRAPPED_KEY: self.kek.wrap(data_key, aad),
            KeyField.KEK: self.kek.name,
            KeyField.CREATED_AT: utcnow(),
            **(about or {}),
        }
        write_one(self.client, self.ref(uid), doc)
        return {k: doc.get(k) for k in PUBLIC}

    def info(self, uid: str) -> dict[str, Any] | None:
        """The stored key's public part (label, created, what OpenRouter said of it), or None."""
        snap = self.ref(uid).get(list(PUBLIC))
        return snap.to_dict() if snap.exists else None

    def get(self, uid: str) -> str | None:
        """The user's key in the clear (for the upstream request only), or None."""
        snap = self.ref(uid).get()
        if not snap.exists or self.kek is None:
            return None
        doc, aad = snap.to_dict() or {}, uid.encode()
        data_key = self.kek.unwrap(doc[KeyField.WRAPPED_KEY], aad)
        api_key = AESGCM(data_key).decrypt(doc[KeyField.NONCE], doc[KeyField.CIPHERTEXT], aad).decode()
        redact.register(api_key, user=True)
        return api_key

    def delete(self, uid: str) -> bool:
        """Remove the user's key; False if there was none."""
        existed = self.ref(uid).get([KeyField.LABEL]).exists
        write_one(self.client, self.ref(uid), None)
        return existed
