import { Injectable } from '@nestjs/common';

/**
 * The time every scheduling rule reads. Production uses the system clock; tests move it forward
 * (`advance`) to simulate an outage or a DST transition without waiting for it.
 */
@Injectable()
export class Clock {
  private offsetMs = 0;

  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }

  advance(ms: number): void {
    this.offsetMs += ms;
  }

  /** Jumps to `instant` (tests only); later reads move on from there in real time. */
  setTo(instant: Date): void {
    this.offsetMs = instant.getTime() - Date.now();
  }
}
