import { isTruthy, JqCompileError, JqExpression, JqRuntimeError, JsonTemplate } from './jq-expression.js';
import { parseDuration } from './duration.js';

const context = {
  run: { id: 'exec-1' },
  trigger: { at: '2025-12-01T10:00:00Z', data: { order: 42 } },
  steps: { 'Payment confirmed': { data: { status: 'confirmed', amount: 9.95, items: [1, 2] } } },
};

describe('JqExpression', () => {
  it.each([
    ['.run.id', 'exec-1'],
    ['.steps["Payment confirmed"].data.status == "confirmed"', true],
    ['.missing.path', null],
    ['.steps["Payment confirmed"].data.items | length', 2],
    ['.trigger.data.order + 1', 43],
    ['[.steps[] | .data.amount] | add', 9.95],
  ])('%s', (source, expected) => {
    expect(JqExpression.compile(source).evaluate(context)).toEqual(expected);
  });

  it('refuses a syntax error at compile time with the position', () => {
    expect(() => JqExpression.compile('.a | | b')).toThrow(JqCompileError);
    expect(() => JqExpression.compile('.steps["x"')).toThrow(/Expected/);
  });

  it('reports run-time errors as JqRuntimeError', () => {
    expect(() => JqExpression.compile('.run[0]').evaluate(context)).toThrow(JqRuntimeError);
  });

  it('follows jq truthiness', () => {
    expect([false, null, undefined].map(isTruthy)).toEqual([false, false, false]);
    expect([0, '', [], {}, true].map(isTruthy)).toEqual([true, true, true, true, true]);
  });
});

describe('JsonTemplate', () => {
  it('keeps the JSON type of a value that is exactly one template', () => {
    const template = JsonTemplate.compile({
      order: '{{ .steps["Payment confirmed"].data }}',
      count: '{{ .steps["Payment confirmed"].data.items | length }}',
      missing: '{{ .nope }}',
      flag: '{{.trigger.data.order > 40}}',
    });
    expect(template.render(context)).toEqual({
      order: { status: 'confirmed', amount: 9.95, items: [1, 2] },
      count: 2,
      missing: null,
      flag: true,
    });
  });

  it('interpolates inside longer strings: strings as they are, the rest as compact JSON', () => {
    const template = JsonTemplate.compile({
      text: 'run {{ .run.id }} items {{ .steps["Payment confirmed"].data.items }} at {{ .missing }}',
      nested: ['x-{{ .trigger.data.order }}', { deep: '{{ .run.id }}' }],
      plain: 'no templates',
      number: 7,
    });
    expect(template.render(context)).toEqual({
      text: 'run exec-1 items [1,2] at null',
      nested: ['x-42', { deep: 'exec-1' }],
      plain: 'no templates',
      number: 7,
    });
  });

  it('never templates keys', () => {
    expect(JsonTemplate.compile({ '{{ .run.id }}': 1 }).render(context)).toEqual({ '{{ .run.id }}': 1 });
  });

  it('fails compilation on a bad expression anywhere', () => {
    expect(() => JsonTemplate.compile({ a: ['ok', { b: 'x {{ .a | | }} y' }] })).toThrow(JqCompileError);
  });
});

describe('parseDuration', () => {
  it.each([
    ['PT0S', 0],
    ['PT10M', 600_000],
    ['PT24H', 86_400_000],
    ['P1DT12H', 129_600_000],
    ['P2W', 1_209_600_000],
    ['PT1.5S', 1_500],
  ])('%s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['P', 'PT', 'P1Y', 'P1M', '10m', 'PT-1S', 'P1000W', ''])('refuses %s', (text) => {
    expect(parseDuration(text)).toBeNull();
  });
});
