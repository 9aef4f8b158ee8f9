import jsep from 'jsep';

/**
 * A saga step's `condition`: a small expression over the saga context such as
 * `customer.is_premium` or `order.total >= 100 && !order.gift`. It is parsed by
 * jsep into an AST and evaluated by the walker below; nothing is ever handed to
 * `eval` or `new Function`. Only reading the context, literals, comparisons,
 * arithmetic, `!`, `&&`, `||` and `?:` are allowed; calls, `this`, assignment
 * and prototype properties are refused when the condition is compiled.
 */
export class ConditionError extends Error {
  constructor(
    readonly expression: string,
    readonly reason: string,
  ) {
    super(`condition ${JSON.stringify(expression)}: ${reason}`);
    this.name = 'ConditionError';
  }
}

export interface CompiledCondition {
  readonly source: string;
  /** Evaluates against the context; truthiness of the result decides. */
  test(scope: Readonly<Record<string, unknown>>): boolean;
}

const BINARY = new Set(['==', '!=', '===', '!==', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', '&&', '||']);
const UNARY = new Set(['!', '-', '+']);
/** Properties that lead out of plain data into the prototype chain. */
const FORBIDDEN = new Set(['__proto__', 'prototype', 'constructor', '__defineGetter__', '__defineSetter__', '__lookupGetter__', '__lookupSetter__']);
const MAX_LENGTH = 500;
const MAX_NODES = 200;

type Node = jsep.Expression;

function check(node: Node, source: string, count: { n: number }): void {
  if (++count.n > MAX_NODES) throw new ConditionError(source, `more than ${MAX_NODES} terms`);
  switch (node.type) {
    case 'Literal':
    case 'Identifier':
      if (node.type === 'Identifier' && FORBIDDEN.has(node.name as string)) throw new ConditionError(source, `${String(node.name)} is not allowed`);
      return;
    case 'MemberExpression': {
      check(node.object as Node, source, count);
      const prop = node.property as Node;
      if (node.computed) {
        if (prop.type !== 'Literal') throw new ConditionError(source, 'only literal indexes such as items[0] or a["b"] are allowed');
        if (FORBIDDEN.has(String(prop.value))) throw new ConditionError(source, `${String(prop.value)} is not allowed`);
      } else if (FORBIDDEN.has(prop.name as string)) {
        throw new ConditionError(source, `${String(prop.name)} is not allowed`);
      }
      return;
    }
    case 'UnaryExpression':
      if (!UNARY.has(node.operator as string)) throw new ConditionError(source, `operator ${String(node.operator)} is not allowed`);
      check(node.argument as Node, source, count);
      return;
    case 'BinaryExpression':
    case 'LogicalExpression':
      if (!BINARY.has(node.operator as string)) throw new ConditionError(source, `operator ${String(node.operator)} is not allowed`);
      check(node.left as Node, source, count);
      check(node.right as Node, source, count);
      return;
    case 'ConditionalExpression':
      check(node.test as Node, source, count);
      check(node.consequent as Node, source, count);
      check(node.alternate as Node, source, count);
      return;
    default:
      throw new ConditionError(source, `${node.type} is not allowed (only context fields, literals, comparisons, arithmetic, ! && || ?:)`);
  }
}

/** Reads an own property of plain data; anything else (prototype, functions) is undefined. */
function read(target: unknown, key: unknown): unknown {
  if (target === null || target === undefined) return undefined;
  const k = String(key);
  if (FORBIDDEN.has(k)) return undefined;
  if (typeof target === 'string' || Array.isArray(target)) {
    if (k === 'length') return target.length;
  }
  if (typeof target !== 'object' && typeof target !== 'string') return undefined;
  if (!Object.prototype.hasOwnProperty.call(target, k)) return undefined;
  const value = (target as Record<string, unknown>)[k];
  return typeof value === 'function' ? undefined : value;
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

function evaluate(node: Node, scope: Readonly<Record<string, unknown>>): unknown {
  switch (node.type) {
    case 'Literal':
      return node.value;
    case 'Identifier':
      return read(scope, node.name);
    case 'MemberExpression': {
      const obj = evaluate(node.object as Node, scope);
      const prop = node.property as Node;
      return read(obj, node.computed ? prop.value : prop.name);
    }
    case 'UnaryExpression': {
      const v = evaluate(node.argument as Node, scope);
      if (node.operator === '!') return !v;
      return node.operator === '-' ? -num(v) : num(v);
    }
    case 'ConditionalExpression':
      return evaluate(node.test as Node, scope) ? evaluate(node.consequent as Node, scope) : evaluate(node.alternate as Node, scope);
    default: {
      const op = node.operator as string;
      const left = evaluate(node.left as Node, scope);
      if (op === '&&') return left ? evaluate(node.right as Node, scope) : left;
      if (op === '||') return left ? left : evaluate(node.right as Node, scope);
      const right = evaluate(node.right as Node, scope);
      switch (op) {
        // No coercion: `==` is strict, so "1" == 1 is false, as a user reading JSON expects.
        case '==':
        case '===':
          return left === right;
        case '!=':
        case '!==':
          return left !== right;
        case '<':
          return (left as number) < (right as number);
        case '<=':
          return (left as number) <= (right as number);
        case '>':
          return (left as number) > (right as number);
        case '>=':
          return (left as number) >= (right as number);
        case '+':
          return typeof left === 'string' || typeof right === 'string' ? String(left) + String(right) : num(left) + num(right);
        case '-':
          return num(left) - num(right);
        case '*':
          return num(left) * num(right);
        case '/':
          return num(left) / num(right);
        default:
          return num(left) % num(right);
      }
    }
  }
}

/** Parses and checks `source`; throws ConditionError naming what is wrong. */
export function compileCondition(source: string): CompiledCondition {
  if (typeof source !== 'string' || source.trim() === '') throw new ConditionError(String(source), 'empty');
  if (source.length > MAX_LENGTH) throw new ConditionError(source.slice(0, 40) + '…', `longer than ${MAX_LENGTH} characters`);
  let ast: Node;
  try {
    ast = jsep(source);
  } catch (err) {
    throw new ConditionError(source, err instanceof Error ? err.message : String(err));
  }
  check(ast, source, { n: 0 });
  return { source, test: (scope) => Boolean(evaluate(ast, scope)) };
}
