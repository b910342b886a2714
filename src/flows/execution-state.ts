import { DomainException } from '../common/errors.js';

export const EXECUTION_STATUSES = ['running', 'waiting', 'completed', 'failed', 'cancelled'] as const;
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];

export type ExecutionEvent =
  | 'start'
  | 'step_completed'
  | 'wait_for_callback'
  | 'activate'
  | 'timeout_continue'
  | 'timeout_fail'
  | 'finish'
  | 'fail'
  | 'cancel';

interface Transition {
  from: ExecutionStatus | null;
  event: ExecutionEvent;
  to: ExecutionStatus;
}

/**
 * Every move an execution can make, and nothing else. The engine asks `transition()` before it
 * writes a status; an event that is not in this table is a bug, not a state.
 */
export const TRANSITIONS: readonly Transition[] = [
  { from: null, event: 'start', to: 'running' },
  { from: 'running', event: 'step_completed', to: 'running' },
  { from: 'running', event: 'wait_for_callback', to: 'waiting' },
  { from: 'waiting', event: 'activate', to: 'running' },
  { from: 'waiting', event: 'timeout_continue', to: 'running' },
  { from: 'waiting', event: 'timeout_fail', to: 'failed' },
  { from: 'running', event: 'finish', to: 'completed' },
  { from: 'running', event: 'fail', to: 'failed' },
  { from: 'running', event: 'cancel', to: 'cancelled' },
  { from: 'waiting', event: 'cancel', to: 'cancelled' },
];

export const FINISHED: readonly ExecutionStatus[] = ['completed', 'failed', 'cancelled'];

export function transition(from: ExecutionStatus | null, event: ExecutionEvent): ExecutionStatus {
  const found = TRANSITIONS.find((row) => row.from === from && row.event === event);
  if (!found) {
    if (from && FINISHED.includes(from))
      throw new DomainException('EXECUTION_FINISHED', `The execution is already ${from}`);
    throw new Error(`no transition from ${from ?? 'nothing'} on ${event}`);
  }
  return found.to;
}

export function canTransition(from: ExecutionStatus, event: ExecutionEvent): boolean {
  return TRANSITIONS.some((row) => row.from === from && row.event === event);
}
