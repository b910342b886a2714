// Registers (or re-registers) this backend with Switchyard, as a backend would at every boot.
//
//   SWITCHYARD_URL=http://localhost:3000 SWITCHYARD_TOKEN=sy_... \
//   CALLBACK_URL=https://payments.example.com/triggers/callback RUN_KEYS=hourly-payment \
//   node examples/node-receiver/register.mjs
//
// Prints the answer as JSON. The first registration (201) carries signingSecret: store it as
// the receiver's WEBHOOK_SECRET. Later ones (200) update the backend and omit the secret.
const base = process.env.SWITCHYARD_URL ?? 'http://localhost:3000';
const token = process.env.SWITCHYARD_TOKEN;
const callbackUrl = process.env.CALLBACK_URL;
if (!token || !callbackUrl) {
  console.error('Set SWITCHYARD_TOKEN (a machine-user token) and CALLBACK_URL');
  process.exit(1);
}

const response = await fetch(`${base}/api/machine/register-backend`, {
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  body: JSON.stringify({
    name: process.env.BACKEND_NAME ?? 'example-receiver',
    callbackUrl,
    description: 'Example receiver from examples/node-receiver',
    runKeys: (process.env.RUN_KEYS ?? '').split(',').filter(Boolean),
  }),
});
const body = await response.json();
if (!response.ok) {
  console.error(`register-backend answered ${response.status}: ${JSON.stringify(body)}`);
  process.exit(1);
}
console.log(JSON.stringify({ status: response.status, ...body }));
