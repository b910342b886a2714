import { Logger } from '@nestjs/common';
import pg from 'pg';

/**
 * A dedicated connection LISTENing on the delivery channel: an enqueue anywhere wakes idle
 * workers on every replica within milliseconds instead of at the next poll. Reconnects with
 * backoff; polling keeps the engine correct while it is down.
 */
export class NotificationListener {
  private readonly logger = new Logger(NotificationListener.name);
  private client: pg.Client | null = null;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly onNotify: () => void,
  ) {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private async connect(failures: number): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.url, application_name: 'switchyard-listener' });
    let listening = false;
    client.on('notification', () => this.onNotify());
    // Once listening, a later loss is a new outage: its backoff starts over rather than where the last one ended.
    client.on('error', (error) => this.reconnect(client, listening ? 1 : failures + 1, error));
    try {
      await client.connect();
      await client.query(`listen ${this.channel}`);
      if (this.stopped) {
        // stop() ran while this connection was being made: it could not end it.
        await client.end().catch(() => undefined);
        return;
      }
      listening = true;
      this.client = client;
      if (failures > 0) this.logger.log(`listening on ${this.channel} again`);
      this.onNotify();
    } catch (error) {
      this.reconnect(client, failures + 1, error as Error);
    }
  }

  private reconnect(client: pg.Client, failures: number, error: Error): void {
    void client.end().catch(() => undefined);
    if (this.client === client) this.client = null;
    if (this.stopped || this.retryTimer) return;
    const delay = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
    this.logger.warn(`notification connection lost (${error.message}); retrying in ${delay} ms`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect(failures);
    }, delay);
  }
}
