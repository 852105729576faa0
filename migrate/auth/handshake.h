/* The keyed handshake (docs/security.md, docs/migration-stream.md): mutual
 * challenge-response before any HELLO is sent, so a peer without the key
 * learns nothing of the VM and the target builds nothing for it.
 *
 *   S: preamble (flag AUTH)  AUTH_HELLO(version, flags, nonce_s)
 *   T: AUTH_CHALLENGE(version, flags, nonce_t, proof_t)
 *   S: AUTH_PROOF(proof_s)
 *
 * proof_t = HMAC(K, "minivmm v1 target proof" | H(transcript up to proof_t))
 * proof_s = HMAC(K, "minivmm v1 source proof" | H(transcript up to proof_s))
 * session = HMAC(K, "minivmm v1 session"      | H(whole transcript))
 * where the transcript is every byte both sides sent, preamble included,
 * and H is SHA-256. The key never travels; fresh nonces from both sides
 * make every session's proofs and keys new, so a recorded handshake
 * replayed fails. The session secret keys the frame MACs of the main
 * connection and of each data channel (proto/framemac.h). */
#ifndef MINIVMM_AUTH_HANDSHAKE_H
#define MINIVMM_AUTH_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "migrate/auth/keyfile.h"
#include "migrate/auth/hmac.h"
#include "migrate/proto/stream.h"

/* Source: writes the preamble; with a key (key->set), runs the keyed
 * handshake and turns frame MACs on (integrity: PAGES too). The peer's
 * refusal, a target that fails to prove the key, or a keyless target
 * come back as an error with one line in err. */
int auth_source(struct stream *s, const struct auth_key *key, bool integrity, char *err,
		size_t errlen);
/* Target, after the preamble pre was read: a keyed source against a
 * keyless target and the reverse are refused (REJECT, then the rest the
 * peer sent is drained so that it reads the refusal); with a key on both
 * sides the source must prove it. 0: go on to HELLO (frame MACs on when
 * keyed). Nothing is allocated for the peer before it has proved the key. */
int auth_target(struct stream *s, const uint8_t pre[STREAM_PREAMBLE_LEN],
		const struct auth_key *key, char *err, size_t errlen);

/* The proofs and the session secret from a transcript hash (exposed for
 * the unit tests). */
void auth_transcript_mac(const uint8_t key[AUTH_KEY_LEN], const char *label,
			 const uint8_t hash[SHA256_LEN], uint8_t out[SHA256_LEN]);

#endif
