--- Shopping cart: items, quantities and totals.
-- @module shop.cart
local prices = require("shop.prices")

local Cart = {}
Cart.__index = Cart

local MAX_QUANTITY = 99

--- Create an empty cart for a customer.
-- @tparam string customer the customer's id
-- @treturn Cart a new cart
function Cart.new(customer)
  return setmetatable({ customer = customer, lines = {} }, Cart)
end

--- Add a product to the cart, or raise its quantity when it is already there.
-- Quantities are capped at MAX_QUANTITY.
-- @tparam string sku product code
-- @tparam[opt=1] number quantity how many
function Cart:add(sku, quantity)
  quantity = quantity or 1
  local current = self.lines[sku] or 0
  self.lines[sku] = math.min(current + quantity, MAX_QUANTITY)
end

--- Remove a product from the cart entirely.
function Cart:remove(sku)
  self.lines[sku] = nil
end

--- Total price of everything in the cart, with the discount applied.
-- @treturn number total in cents
function Cart:total()
  local sum = 0
  for sku, quantity in pairs(self.lines) do
    sum = sum + prices.lookup(sku) * quantity
  end
  return prices.apply_discount(sum, self.customer)
end

return Cart
