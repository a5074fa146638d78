-- wrk script for ./build.sh bench: every request is the same POST.
--   wrk ... -s bench/fixed.lua URL -- BODY [HEADER_NAME HEADER_VALUE]
-- BODY is sent as application/x-www-form-urlencoded; the optional header is added as given.
-- Set once in init, so wrk builds the request a single time.

function init(args)
   wrk.method = "POST"
   wrk.body = args[1]
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   if args[2] then
      wrk.headers[args[2]] = args[3]
   end
end
