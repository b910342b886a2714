import { createHmac, randomBytes } from 'node:crypto';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { newWebhookId, secretKey, signWebhook } from './webhook-signer.js';

const HEX_HEADER = 'x-switchyard-signature';

const newSecret = (): string => 'whsec_' + randomBytes(24).toString('base64');
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function sign(body: string, secrets: string[], timestampSeconds = nowSeconds()) {
  return signWebhook({ webhookId: newWebhookId(), timestampSeconds, body, secrets, hexHeaderName: HEX_HEADER });
}

describe('signWebhook', () => {
  it('matches the Standard Webhooks reference example', () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const headers = signWebhook({
      webhookId: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      timestampSeconds: 1614265330,
      body: '{"test": 2432232314}',
      secrets: [secret],
      hexHeaderName: HEX_HEADER,
    });
    expect(headers).toEqual({
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
      // Computed once with createHmac('sha256', key).update(body).digest('hex').
      [HEX_HEADER]: 'e2cb4f5251572539d458bfb8a7adb533b08801e6a794467e06f771debbb0818b',
    });
    expect(headers['webhook-signature']).toBe(
      new Webhook(secret).sign('msg_p5jXN8AQM9LWM0D4loKWxJek', new Date(1614265330_000), '{"test": 2432232314}'),
    );
  });

  it('verifies with the standardwebhooks library, with or without the whsec_ prefix', () => {
    const secret = newSecret();
    const body = JSON.stringify({ triggerId: 't1', executionTime: '2025-12-01T10:00:00Z' });
    const headers = sign(body, [secret]);
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(new Webhook(secret.slice('whsec_'.length)).verify(body, headers)).toEqual(JSON.parse(body));
  });

  it('carries one signature per valid secret, newest first, each verifying alone', () => {
    const secrets = [newSecret(), newSecret(), newSecret()];
    const body = '{"rotation":true}';
    const timestamp = nowSeconds();
    const headers = signWebhook({
      webhookId: 'msg_rotation',
      timestampSeconds: timestamp,
      body,
      secrets,
      hexHeaderName: HEX_HEADER,
    });

    const standard = headers['webhook-signature'].split(' ');
    const hex = headers[HEX_HEADER].split(' ');
    expect(standard).toHaveLength(3);
    expect(hex).toHaveLength(3);
    secrets.forEach((secret, i) => {
      expect(() => new Webhook(secret).verify(body, headers)).not.toThrow();
      expect(standard[i]).toBe(new Webhook(secret).sign('msg_rotation', new Date(timestamp * 1000), body));
      expect(hex[i]).toBe(createHmac('sha256', secretKey(secret)).update(body).digest('hex'));
    });
    expect(() => new Webhook(newSecret()).verify(body, headers)).toThrow(WebhookVerificationError);
  });

  it('signs the raw body in hex the way seed receivers compute it', () => {
    const secret = newSecret();
    const body = '{"status":"ok","n":1}';
    const expected = createHmac('sha256', Buffer.from(secret.slice(6), 'base64'))
      .update(body)
      .digest('hex');
    expect(sign(body, [secret])[HEX_HEADER]).toBe(expected);
  });

  it('signs the UTF-8 bytes of a non-ASCII body', () => {
    const secret = newSecret();
    const body = '{"name":"Zoë – 日本 🚀"}';
    const headers = sign(body, [secret]);
    const bytes = Buffer.from(body, 'utf8');
    expect(new Webhook(secret).verify(bytes, headers)).toEqual(JSON.parse(body));
    expect(headers[HEX_HEADER]).toBe(createHmac('sha256', secretKey(secret)).update(bytes).digest('hex'));
    expect(headers[HEX_HEADER]).not.toBe(
      createHmac('sha256', secretKey(secret)).update(Buffer.from(body, 'latin1')).digest('hex'),
    );
  });

  it('fails verification when the body or the id is tampered with', () => {
    const secret = newSecret();
    const headers = sign('{"amount":10}', [secret]);
    expect(() => new Webhook(secret).verify('{"amount":1000}', headers)).toThrow(WebhookVerificationError);
    expect(() => new Webhook(secret).verify('{"amount":10}', { ...headers, 'webhook-id': 'msg_other' })).toThrow(
      WebhookVerificationError,
    );
  });

  it('lowercases the hex header name and refuses to sign without a secret', () => {
    const headers = signWebhook({
      webhookId: 'msg_x',
      timestampSeconds: 1,
      body: '',
      secrets: [newSecret()],
      hexHeaderName: 'X-Seed-Signature',
    });
    expect(Object.keys(headers)).toContain('x-seed-signature');
    expect(() => sign('{}', [])).toThrow(/at least one/);
  });
});

describe('secretKey', () => {
  it('decodes the base64 part after whsec_', () => {
    expect(secretKey('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).toEqual(
      Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'),
    );
  });

  it.each(['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_', 'whsec_not base64!', 'whsec_MfKQ9r8G*KYqrTw'])(
    'rejects %j',
    (secret) => {
      expect(() => secretKey(secret)).toThrow(/whsec_/);
    },
  );
});

describe('newWebhookId', () => {
  it('is msg_ and a 26-character Crockford base32 ULID', () => {
    expect(newWebhookId()).toMatch(/^msg_[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  it('is unique', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => newWebhookId()));
    expect(ids.size).toBe(10_000);
  });

  it('sorts by creation time', () => {
    const earlier = newWebhookId(Date.parse('2025-01-01T00:00:00Z'));
    const later = newWebhookId(Date.parse('2025-01-01T00:00:00.001Z'));
    expect(earlier < later).toBe(true);
    // The first 10 characters are the millisecond timestamp.
    expect(newWebhookId(0).slice(4, 14)).toBe('0000000000');
  });
});
