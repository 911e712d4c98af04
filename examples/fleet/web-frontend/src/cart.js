'use strict';

// Cart totals in integer cents.
function total(items) {
  return items.reduce((sum, item) => sum + item.cents * item.qty, 0);
}

function discount(totalCents, percent) {
  return Math.round(totalCents * (1 - percent / 100));
}

module.exports = { total, discount };
