--- String helpers used across the shop.
local trim_pattern = "^%s*(.-)%s*$"

--- Remove whitespace from both ends of a string.
local function trim(s)
  return (s:gsub(trim_pattern, "%1"))
end

local helpers = {}

--- Split a string on a separator into a list of parts.
helpers.split = function(s, sep)
  local parts = {}
  for part in (s .. sep):gmatch("(.-)" .. sep:gsub("%p", "%%%0")) do
    parts[#parts + 1] = part
  end
  return parts
end

return {
  trim = trim,
  split = helpers.split,
  --- Format an amount of cents as a price with two decimals, like "12.50".
  format_price = function(cents)
    return string.format("%d.%02d", cents // 100, cents % 100)
  end,
}
