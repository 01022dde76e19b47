--- A list picker: the model behind a selection UI.
local Picker = {}
Picker.__index = Picker

--- Create a picker over a list of entries.
function Picker.new(entries)
  return setmetatable({ entries = entries, selected = {} }, Picker)
end

--- Toggle whether the entry at an index is selected.
function Picker:toggle(index)
  self.selected[index] = not self.selected[index] or nil
end

--- Return the selected entries, in list order.
function Picker:get_selection()
  local result = {}
  for i, entry in ipairs(self.entries) do
    if self.selected[i] then
      result[#result + 1] = entry
    end
  end
  return result
end

return Picker
