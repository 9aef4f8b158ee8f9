/**
 * The example domain: an order (created, item added, paid, shipped) as an
 * event-sourced aggregate, its commands and their handlers. Used by the tests,
 * the benchmark and the README walkthrough.
 */
import { AggregateRoot, type DomainEvent } from '../aggregate.js';
import { BaseCommand, type CommandBus, type CommandHandler, type ValidationResult } from '../buses.js';
import { BusinessRuleViolation } from '../errors.js';
import type { Upcasters } from '../upcasters.js';

export type OrderStatus = 'pending' | 'created' | 'paid' | 'shipped';

/**
 * Only what the order's decisions need: the item list lives in the events and the
 * read model. A small state keeps snapshots small, so loading stays fast however
 * long the stream grows.
 */
export interface OrderState {
  status: OrderStatus;
  customerId: string | null;
  itemCount: number;
  totalCents: number;
}

export interface ItemAdded {
  sku: string;
  quantity: number;
  unit_price_cents: number;
}

/** Schema version of `item_added` written today; v1 was `{ sku, qty, price }` with price in euros. */
export const ITEM_ADDED_VERSION = 2;

/** item_added v1 -> v2. */
export function registerOrderUpcasters(upcasters: Upcasters): Upcasters {
  return upcasters.register('item_added', 1, (data) => {
    const v1 = data as { sku: string; qty: number; price: number };
    return { sku: v1.sku, quantity: v1.qty, unit_price_cents: Math.round(v1.price * 100) } satisfies ItemAdded;
  });
}

export class Order extends AggregateRoot<OrderState> {
  static override readonly aggregateType = 'order';
  static override readonly snapshotEvery = 100;

  protected initialState(): OrderState {
    return { status: 'pending', customerId: null, itemCount: 0, totalCents: 0 };
  }

  protected when(state: OrderState, event: DomainEvent): OrderState {
    switch (event.type) {
      case 'order_created':
        return { ...state, status: 'created', customerId: (event.data as { customer_id: string }).customer_id };
      case 'item_added': {
        const d = event.data as ItemAdded;
        return { ...state, itemCount: state.itemCount + d.quantity, totalCents: state.totalCents + d.quantity * d.unit_price_cents };
      }
      case 'order_paid':
        return { ...state, status: 'paid' };
      case 'order_shipped':
        return { ...state, status: 'shipped' };
      default:
        return state;
    }
  }

  create(customerId: string): void {
    if (this.state.status !== 'pending') throw new BusinessRuleViolation(`order ${this.id} already created`);
    this.applyEvent('order_created', { order_id: this.id, customer_id: customerId });
  }

  addItem(item: { sku: string; quantity: number; unitPriceCents: number }): void {
    if (this.state.status !== 'created') throw new BusinessRuleViolation(`order ${this.id} is ${this.state.status}: items can only be added to a created order`);
    this.applyEvent('item_added', { sku: item.sku, quantity: item.quantity, unit_price_cents: item.unitPriceCents } satisfies ItemAdded, { schemaVersion: ITEM_ADDED_VERSION });
  }

  pay(amountCents: number): void {
    if (this.state.status !== 'created') throw new BusinessRuleViolation(`order ${this.id} is ${this.state.status}: only a created order can be paid`);
    if (this.state.itemCount === 0) throw new BusinessRuleViolation(`order ${this.id} has no items`);
    if (amountCents !== this.state.totalCents) throw new BusinessRuleViolation(`order ${this.id} totals ${this.state.totalCents} cents, paid ${amountCents}`);
    this.applyEvent('order_paid', { amount_cents: amountCents });
  }

  ship(): void {
    if (this.state.status !== 'paid') throw new BusinessRuleViolation(`order ${this.id} is ${this.state.status}: only a paid order ships`);
    this.applyEvent('order_shipped', {});
  }
}

const invalid = (errors: string[]): ValidationResult => ({ is_valid: errors.length === 0, errors });
const isPositiveInt = (n: unknown) => Number.isInteger(n) && (n as number) > 0;

export class CreateOrderCommand extends BaseCommand {
  constructor(
    readonly order_id: string,
    readonly customer_id: string,
    readonly items: Array<{ sku: string; quantity: number; unit_price_cents: number }>,
  ) {
    super();
  }
  override validate(): ValidationResult {
    const errors: string[] = [];
    if (!this.order_id) errors.push('Order ID is required');
    if (!this.customer_id) errors.push('Customer ID is required');
    if (!Array.isArray(this.items) || this.items.length === 0) errors.push('Order must have items');
    (this.items ?? []).forEach((it, i) => {
      if (!it.sku) errors.push(`items.${i}.sku is required`);
      if (!isPositiveInt(it.quantity)) errors.push(`items.${i}.quantity must be a positive integer`);
      if (!Number.isInteger(it.unit_price_cents) || it.unit_price_cents < 0) errors.push(`items.${i}.unit_price_cents must be an integer >= 0`);
    });
    return invalid(errors);
  }
}

export class AddItemCommand extends BaseCommand {
  constructor(
    readonly order_id: string,
    readonly sku: string,
    readonly quantity: number,
    readonly unit_price_cents: number,
  ) {
    super();
  }
  override validate(): ValidationResult {
    const errors: string[] = [];
    if (!this.order_id) errors.push('Order ID is required');
    if (!this.sku) errors.push('sku is required');
    if (!isPositiveInt(this.quantity)) errors.push('quantity must be a positive integer');
    if (!Number.isInteger(this.unit_price_cents) || this.unit_price_cents < 0) errors.push('unit_price_cents must be an integer >= 0');
    return invalid(errors);
  }
}

export class PayOrderCommand extends BaseCommand {
  constructor(
    readonly order_id: string,
    readonly amount_cents: number,
  ) {
    super();
  }
  override validate(): ValidationResult {
    return invalid([...(!this.order_id ? ['Order ID is required'] : []), ...(!Number.isInteger(this.amount_cents) || this.amount_cents <= 0 ? ['amount_cents must be a positive integer'] : [])]);
  }
}

export class ShipOrderCommand extends BaseCommand {
  constructor(readonly order_id: string) {
    super();
  }
  override validate(): ValidationResult {
    return invalid(!this.order_id ? ['Order ID is required'] : []);
  }
}

/** Handlers of the order commands; register them with `registerOrderCommands(bus)`. */
export const orderHandlers = {
  create: {
    async handle(cmd, ctx) {
      const order = new Order(cmd.order_id);
      order.create(cmd.customer_id);
      for (const it of cmd.items) order.addItem({ sku: it.sku, quantity: it.quantity, unitPriceCents: it.unit_price_cents });
      await ctx.save(order);
      return { order_id: order.id, total_cents: order.state.totalCents };
    },
  } satisfies CommandHandler<CreateOrderCommand, { order_id: string; total_cents: number }>,
  addItem: {
    async handle(cmd, ctx) {
      const order = await ctx.store.loadAggregate(Order, cmd.order_id);
      order.addItem({ sku: cmd.sku, quantity: cmd.quantity, unitPriceCents: cmd.unit_price_cents });
      await ctx.save(order);
      return { order_id: order.id, total_cents: order.state.totalCents, version: order.version };
    },
  } satisfies CommandHandler<AddItemCommand, { order_id: string; total_cents: number; version: number }>,
  pay: {
    async handle(cmd, ctx) {
      const order = await ctx.store.loadAggregate(Order, cmd.order_id);
      order.pay(cmd.amount_cents);
      await ctx.save(order);
      return { order_id: order.id };
    },
  } satisfies CommandHandler<PayOrderCommand, { order_id: string }>,
  ship: {
    async handle(cmd, ctx) {
      const order = await ctx.store.loadAggregate(Order, cmd.order_id);
      order.ship();
      await ctx.save(order);
      return { order_id: order.id };
    },
  } satisfies CommandHandler<ShipOrderCommand, { order_id: string }>,
};

export function registerOrderCommands(bus: CommandBus): CommandBus {
  return bus
    .register(CreateOrderCommand, orderHandlers.create)
    .register(AddItemCommand, orderHandlers.addItem)
    .register(PayOrderCommand, orderHandlers.pay)
    .register(ShipOrderCommand, orderHandlers.ship);
}
