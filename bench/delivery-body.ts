/**
 * The body every `delivery` benchmark message carries, service and raw loop alike: a cron firing's
 * payload (SPEC §5, ~450 bytes) plus `seq` and `enqueuedAt` (wall-clock ms, sub-ms resolution), from
 * which the receiver computes enqueue-to-receipt latency.
 */
export function benchBody(seq: number, enqueuedAt: number): string {
  return JSON.stringify({
    triggerId: '0b3f6c1e-9a43-4f7e-8a55-6f2d7c1b9e01',
    triggerName: 'nightly-sync',
    cronExpression: '0 * * * *',
    runKey: 'bench.nightly',
    executionTime: '2026-11-23T10:00:00Z',
    application: { id: '5d0c2a8e-1f34-4b6a-9c7d-2e8f1a3b4c5d', name: 'Bench application', slug: 'bench-app' },
    tenant: { id: '7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d', name: 'Bench tenant', slug: 'bench' },
    project: { id: '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f', name: 'Bench project', slug: 'bench-project' },
    seq,
    enqueuedAt,
  });
}
