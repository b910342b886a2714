import { evaluate, parse } from '@jq-tools/jq';

type Ast = ReturnType<typeof parse>;

export class JqCompileError extends Error {}
export class JqRuntimeError extends Error {}

/**
 * A jq program parsed once (at save time, where a syntax error becomes a 400) and evaluated many
 * times. @jq-tools/jq is a pure TypeScript interpreter, ~100× faster per call than the WASM builds
 * of jq (see FACTS.md); it lacks a few builtins, which then fail at save time or at run time.
 */
export class JqExpression {
  private constructor(
    readonly source: string,
    private readonly ast: Ast,
  ) {}

  static compile(source: string): JqExpression {
    try {
      return new JqExpression(source, parse(source));
    } catch (error) {
      throw new JqCompileError(firstLine((error as Error).message));
    }
  }

  /** The first output (jq's `first(...)`); null when the program yields nothing. */
  evaluate(input: unknown): unknown {
    try {
      const outputs = evaluate(this.ast, [input]);
      const first = outputs.next();
      return first.done ? null : (first.value ?? null);
    } catch (error) {
      throw new JqRuntimeError(`${this.source}: ${firstLine((error as Error).message)}`);
    }
  }
}

function firstLine(message: string): string {
  return message.split('\n')[0];
}

/** jq truthiness: everything but false and null. */
export function isTruthy(value: unknown): boolean {
  return value !== false && value !== null && value !== undefined;
}

const TEMPLATE = /\{\{([\s\S]*?)\}\}/g;
const WHOLE_TEMPLATE = /^\{\{([\s\S]*?)\}\}$/;

type Compiled =
  | { kind: 'literal'; value: unknown }
  | { kind: 'whole'; expression: JqExpression }
  | { kind: 'interpolated'; parts: (string | JqExpression)[] }
  | { kind: 'array'; items: Compiled[] }
  | { kind: 'object'; entries: [string, Compiled][] };

/**
 * A JSON value with `{{ jq }}` templates in its strings. A string that is exactly one template
 * keeps the expression's JSON type; in a longer string the results are interpolated as text
 * (strings as they are, other values as compact JSON). Keys are never templated.
 */
export class JsonTemplate {
  private constructor(private readonly compiled: Compiled) {}

  /** Throws JqCompileError naming the bad expression. */
  static compile(value: unknown): JsonTemplate {
    return new JsonTemplate(compileValue(value));
  }

  render(context: unknown): unknown {
    return renderValue(this.compiled, context);
  }
}

function compileValue(value: unknown): Compiled {
  if (typeof value === 'string') {
    const whole = WHOLE_TEMPLATE.exec(value);
    if (whole && !whole[1].includes('}}')) return { kind: 'whole', expression: JqExpression.compile(whole[1].trim()) };
    if (!value.includes('{{')) return { kind: 'literal', value };
    const parts: (string | JqExpression)[] = [];
    let last = 0;
    for (const match of value.matchAll(TEMPLATE)) {
      if (match.index > last) parts.push(value.slice(last, match.index));
      parts.push(JqExpression.compile(match[1].trim()));
      last = match.index + match[0].length;
    }
    if (last < value.length) parts.push(value.slice(last));
    return { kind: 'interpolated', parts };
  }
  if (Array.isArray(value)) return { kind: 'array', items: value.map(compileValue) };
  if (value !== null && typeof value === 'object') {
    return { kind: 'object', entries: Object.entries(value).map(([key, item]) => [key, compileValue(item)]) };
  }
  return { kind: 'literal', value };
}

function renderValue(compiled: Compiled, context: unknown): unknown {
  switch (compiled.kind) {
    case 'literal':
      return compiled.value;
    case 'whole':
      return compiled.expression.evaluate(context);
    case 'interpolated':
      return compiled.parts
        .map((part) => {
          if (typeof part === 'string') return part;
          const value = part.evaluate(context);
          return typeof value === 'string' ? value : JSON.stringify(value ?? null);
        })
        .join('');
    case 'array':
      return compiled.items.map((item) => renderValue(item, context));
    case 'object':
      return Object.fromEntries(compiled.entries.map(([key, item]) => [key, renderValue(item, context)]));
  }
}
