// oidc-provider (a certified OpenID/OAuth server) as the authorization server behind Envoy and
// spiffe-oauth-filter, for the interop test and the demo. The client is registered with
// tls_client_auth and tls_client_auth_san_uri = its SPIFFE ID, as RFC 8705 §2.1.2 describes.
// The TLS terminator is Envoy: the filter validates the X509-SVID chain against the trust
// domain's authorities and only then forwards the certificate as RFC 9440 Client-Cert (a
// client's own copy never gets through), with the verified SPIFFE ID in x-spiffe-id. So this
// AS takes a certificate as authorised exactly when the filter vouched for it, and binds the
// access token to it (cnf.x5t#S256, RFC 8705 §3).
//
// Settings from the environment: PORT, ISSUER, CLIENT_ID (the SPIFFE ID). Prints "listening"
// once it accepts requests.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import Provider from 'oidc-provider';

const { PORT = '0', ISSUER, CLIENT_ID } = process.env;
if (!ISSUER || !CLIENT_ID) {
  console.error('ISSUER and CLIENT_ID must be set');
  process.exit(2);
}

const RESOURCE = 'https://api.example.com';

// RFC 9440: `Client-Cert: :<base64 DER>:`.
function clientCertificate(ctx) {
  const value = ctx.get('client-cert');
  const match = /^:([A-Za-z0-9+/=]+):$/.exec(value.trim());
  if (!match) return undefined;
  try {
    return new crypto.X509Certificate(Buffer.from(match[1], 'base64'));
  } catch {
    return undefined;
  }
}

const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'as-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(ISSUER, {
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clientAuthMethods: ['tls_client_auth'],
  clients: [{
    client_id: CLIENT_ID,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_san_uri: CLIENT_ID,
    tls_client_certificate_bound_access_tokens: true,
    id_token_signed_response_alg: 'ES256',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  }],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      certificateBoundAccessTokens: true,
      getCertificate: clientCertificate,
      // Envoy's listener accepts any certificate; the filter validated this one against its
      // trust domain (it forwards Client-Cert only then, and says so in x-spiffe-id).
      certificateAuthorized: (ctx) => Boolean(ctx.get('x-spiffe-id')) && Boolean(clientCertificate(ctx)),
      certificateSubjectMatches: (ctx, property, expected) => {
        const cert = clientCertificate(ctx);
        if (!cert || property !== 'tls_client_auth_san_uri') return false;
        const uris = (cert.subjectAltName || '').split(', ')
          .filter((name) => name.startsWith('URI:')).map((name) => name.slice(4));
        return uris.length === 1 && uris[0] === expected && ctx.get('x-spiffe-id') === expected;
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: RESOURCE,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
// Envoy terminates TLS and says so in X-Forwarded-Proto.
provider.proxy = true;
provider.on('server_error', (ctx, err) => console.error('server_error', err));
// One line per token request outcome, for the tests and the demo.
provider.on('grant.success', (ctx) => console.log(`grant.success ${ctx.oidc.client?.clientId}`));
provider.on('grant.error', (ctx, err) => console.log(`grant.error ${err.error}: ${err.error_detail}`));

const server = http.createServer(provider.callback());
server.listen(Number(PORT), '127.0.0.1', () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
