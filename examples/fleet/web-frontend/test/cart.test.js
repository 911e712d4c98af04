'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { total, discount } = require('../src/cart');

test('total multiplies price by quantity', () => {
  assert.strictEqual(total([{ cents: 250, qty: 2 }, { cents: 100, qty: 1 }]), 600);
});

test('discount rounds to the cent', () => {
  assert.strictEqual(discount(999, 10), 899);
});
