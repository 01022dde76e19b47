-- Price list and discounts.
local M = {}

local PRICE_LIST = {
  apple = 120,
  bread = 250,
  cheese = 780,
}

--- Look up the price of a product in cents; unknown products raise an error.
function M.lookup(sku)
  local price = PRICE_LIST[sku]
  if not price then
    error("unknown product: " .. tostring(sku))
  end
  return price
end

local function is_member(customer)
  return type(customer) == "string" and customer:sub(1, 4) == "vip-"
end

--- Apply the loyalty discount: members get ten percent off totals over 10 euros.
M.apply_discount = function(total, customer)
  if is_member(customer) and total > 1000 then
    return math.floor(total * 0.9)
  end
  return total
end

return M
