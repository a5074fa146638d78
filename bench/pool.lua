-- wrk script for ./build.sh bench: a different JWT-SVID in every request.
--   wrk ... -s bench/pool.lua URL -- TOKEN_FILE BODY_PREFIX HEADER_NAME
-- TOKEN_FILE holds one token per line. Each request is a POST of BODY_PREFIX .. token
-- (application/x-www-form-urlencoded) with the same token in HEADER_NAME, taking the tokens in
-- turn from a random starting line, so that no run begins with the tokens the last one ended on.

local tokens = {}
local next_index = 1
local prefix, header
local headers = {["Content-Type"] = "application/x-www-form-urlencoded"}

function init(args)
   for line in io.lines(args[1]) do
      if line ~= "" then
         tokens[#tokens + 1] = line
      end
   end
   if #tokens == 0 then
      error("no tokens in " .. args[1])
   end
   prefix, header = args[2], args[3]
   math.randomseed(os.time())
   next_index = math.random(#tokens)
end

function request()
   local token = tokens[next_index]
   next_index = next_index % #tokens + 1
   headers[header] = token
   return wrk.format("POST", nil, headers, prefix .. token)
end
